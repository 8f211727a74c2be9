"""Deep supervision of the feature net straight from the cost volume (``train.volume_weight``).

Why: the gradient-efficiency probe (docs/learning.md) finds that the SNN's feature net gets little
useful gradient through the spiking layers of the matching net behind it. A training-only head reads
the cost volume itself (its mean over T): a 1x1x1 convolution to one cost channel, upsampled and
soft-argmin'd exactly like the main cost (models.regression), and its disparity loss against ground
truth is added with this weight. The features then also get a gradient through one AND (the
correlation's product) and one linear map. The head is not part of the network: checkpoints,
architecture files, evaluation and the synaptic-operation count are unchanged, and it is dropped after
training (its state is kept in ``last.pt`` only, for ``--resume``).
"""

from __future__ import annotations

import torch
from torch import nn

from models.regression import full_resolution_cost, soft_argmin_disparity
from models.topology import LEVEL_DOWNSAMPLE


class VolumeHead(nn.Module):
    """(B, Cv, D, h, w) mean cost volume -> (B, H, W) disparity in pixels, H <= 3h, W <= 3w."""

    def __init__(self, volume_channels: int, max_disparity_px: int) -> None:
        super().__init__()
        self.max_disp = max_disparity_px
        self.cost = nn.Conv3d(volume_channels, 1, 1)

    def forward(self, volume_mean: torch.Tensor, height: int, width: int) -> torch.Tensor:
        padded = tuple(size * LEVEL_DOWNSAMPLE[0] for size in volume_mean.shape[-2:])
        return soft_argmin_disparity(full_resolution_cost(self.cost(volume_mean), self.max_disp, padded, (height, width)))
