"""Candidate operations of a cell edge and binary-preserving resampling between levels (SPEC §5, §6).

Ops hand their node a current (SPEC §6, the authors' retrain cell): ``skip_connect`` passes the
source's spikes on as a current (the identity: cells run every edge at one level and channel count,
so shapes always allow it); ``snn_b3``/``snn_b5`` are conv3x3 + BN with no LIF of their own, whose
b (3 / 5) shapes the surrogate of the node they feed. Each op keeps its identity after decoding.
Resampling uses max-pooling down and nearest-neighbour up, so spikes stay exactly 0/1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.neurons import ConvBN
from models.topology import OP_INITIAL_B, OPS


def make_op(name: str, channels: int, dims: int) -> nn.Module:
    """One candidate op: (T, B, channels, *spatial) spikes -> a current of the same shape."""
    if name == "skip_connect":
        return nn.Identity()
    if name in OP_INITIAL_B:
        return ConvBN(channels, channels, 3, dims=dims, b=OP_INITIAL_B[name])
    raise ValueError(f"unknown op {name!r}; expected one of {OPS}")


def resample_levels(x_seq: torch.Tensor, from_level: int, to_level: int) -> torch.Tensor:
    """Move a (T, B, C, *spatial) sequence between levels: max-pool by 2^k down, nearest x2^k up."""
    if from_level == to_level:
        return x_seq
    steps, batch = x_seq.shape[:2]
    flat = x_seq.flatten(0, 1)
    dims = flat.dim() - 2
    factor = 2 ** abs(to_level - from_level)
    if to_level > from_level:
        pool = F.max_pool2d if dims == 2 else F.max_pool3d
        flat = pool(flat, kernel_size=factor, stride=factor)
    else:
        flat = F.interpolate(flat, scale_factor=factor, mode="nearest")
    return flat.unflatten(0, (steps, batch))


def resample_current(current: torch.Tensor, from_level: int, to_level: int) -> torch.Tensor:
    """Carry a (T, B, C, *spatial) current to another level without weights (membrane shortcuts).

    Channels double per level as the spatial size halves (SPEC §6), so going down a level averages
    2 x 2 (x 2) positions and repeats each channel twice; going up repeats each position and averages
    channel pairs. Currents are real-valued, so averaging is the exact counterpart of the spikes'
    binary resampling; no conv ever sees the result, only a LIF's membrane.
    """
    steps, batch = current.shape[:2]
    flat = current.flatten(0, 1)
    pool = F.avg_pool2d if flat.dim() == 4 else F.avg_pool3d
    for _ in range(max(0, to_level - from_level)):
        flat = pool(flat, 2).repeat_interleave(2, dim=1)
    for _ in range(max(0, from_level - to_level)):
        flat = F.interpolate(flat, scale_factor=2, mode="nearest")
        flat = flat.unflatten(1, (-1, 2)).mean(2)
    return flat.unflatten(0, (steps, batch))
