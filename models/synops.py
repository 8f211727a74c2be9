"""Synaptic operations of a conv on binary spikes, counted exactly and cheaply inside a forward pass.

The search's energy term (``search.energy_penalty``) needs the synaptic operations the mixed
network would spend, given the spikes it actually produced: every input spike costs one accumulate
per output channel and per output position whose receptive field holds it (fewer at zero-padded
borders). Summed over the input channels, that is one single-channel convolution of the spike counts
with a kernel of ones, so the count costs a small fraction of the conv it describes. It is the same
count as the energy report's op counter (eval/opcount.py) on the retrained network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PJ_TO_MJ = 1e-9


@torch.no_grad()
def conv_synops(spikes: torch.Tensor, conv: nn.Conv2d | nn.Conv3d) -> torch.Tensor:
    """Synaptic operations of ``conv`` on (T, B, C, *spatial) binary ``spikes``, over all steps and
    examples (a float64 scalar, no gradient: the measured spikes weight the architecture's choice)."""
    x = spikes.flatten(0, 1).sum(1, keepdim=True).to(torch.float64)
    ones = torch.ones((1, 1, *conv.kernel_size), dtype=torch.float64, device=spikes.device)
    convolve = F.conv2d if isinstance(conv, nn.Conv2d) else F.conv3d
    receivers = convolve(x, ones, stride=conv.stride, padding=conv.padding, dilation=conv.dilation)
    return receivers.sum() * (conv.out_channels // conv.groups)
