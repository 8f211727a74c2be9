"""Concatenation cost volume (SPEC §7), one callable queried the same way whatever builds it.

For each candidate disparity d (in level-0 pixels), the left features at column x sit beside the
right features at column x - d; columns x < d have no partner and are zero in both halves.
"""

from __future__ import annotations

import torch


def concat_cost_volume(left: torch.Tensor, right: torch.Tensor, num_disp: int) -> torch.Tensor:
    """(N, C, H, W) left and right features -> (N, 2C, num_disp, H, W) volume."""
    if left.shape != right.shape:
        raise ValueError(f"left {tuple(left.shape)} and right {tuple(right.shape)} features differ in shape")
    batch, channels, height, width = left.shape
    volume = left.new_zeros(batch, 2 * channels, num_disp, height, width)
    for d in range(min(num_disp, width)):
        volume[:, :channels, d, :, d:] = left[..., d:]
        volume[:, channels:, d, :, d:] = right[..., : width - d]
    return volume
