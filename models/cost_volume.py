"""Cost volumes (SPEC §7), one callable each, queried the same way whatever builds them.

For each candidate disparity d (in level-0 pixels), the left features at column x meet the right
features at column x - d; columns x < d have no partner and are zero.
- concatenation: left and right side by side (2C channels), as GC-Net / LEAStereo;
- correlation: their per-channel product (C channels). On spikes the product is the AND of the two
  binary maps, so the volume stays binary and the matching net's first conv still counts synaptic
  operations; in the ANN twin it is the product of ReLU features.
"""

from __future__ import annotations

import torch

COST_VOLUMES = ("concat", "correlation")


def concat_cost_volume(left: torch.Tensor, right: torch.Tensor, num_disp: int) -> torch.Tensor:
    """(N, C, H, W) left and right features -> (N, 2C, num_disp, H, W) volume."""
    _check_pair(left, right)
    batch, channels, height, width = left.shape
    volume = left.new_zeros(batch, 2 * channels, num_disp, height, width)
    for d in range(min(num_disp, width)):
        volume[:, :channels, d, :, d:] = left[..., d:]
        volume[:, channels:, d, :, d:] = right[..., : width - d]
    return volume


def correlation_cost_volume(left: torch.Tensor, right: torch.Tensor, num_disp: int) -> torch.Tensor:
    """(N, C, H, W) left and right features -> (N, C, num_disp, H, W) per-channel products."""
    _check_pair(left, right)
    batch, channels, height, width = left.shape
    volume = left.new_zeros(batch, channels, num_disp, height, width)
    for d in range(min(num_disp, width)):
        volume[:, :, d, :, d:] = left[..., d:] * right[..., : width - d]
    return volume


def cost_volume_channels(kind: str, feature_channels: int) -> int:
    """Channels of the volume the matching net receives."""
    return 2 * feature_channels if kind == "concat" else feature_channels


def build_cost_volume(kind: str, left: torch.Tensor, right: torch.Tensor, num_disp: int) -> torch.Tensor:
    if kind == "concat":
        return concat_cost_volume(left, right, num_disp)
    if kind == "correlation":
        return correlation_cost_volume(left, right, num_disp)
    raise ValueError(f"unknown cost volume {kind!r}; expected one of {COST_VOLUMES}")


def _check_pair(left: torch.Tensor, right: torch.Tensor) -> None:
    if left.shape != right.shape:
        raise ValueError(f"left {tuple(left.shape)} and right {tuple(right.shape)} features differ in shape")
