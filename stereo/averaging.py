"""An exponential moving average of the weights, validated and saved in place of the raw weights.

Why: with 16 validation frames and a batch of 2, the validation MDE of one set of weights swings by
±0.1 px from epoch to epoch (docs/learning.md), so ``best.pt`` picks a lucky epoch rather than a good
network. Averaging the weights over the last few hundred steps (Polyak averaging) smooths that out.
``torch.optim.swa_utils.AveragedModel`` does the averaging, BN statistics included
(``use_buffers=True``); the LIF sharpness b is a choice made by DGS, not a weight, so it is copied
from the raw network, never averaged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from models.neurons import lif_modules


class WeightAverage:
    """EMA of ``raw`` with decay d: avg <- d * avg + (1 - d) * raw after every optimiser step."""

    def __init__(self, raw: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.raw = raw
        self.average = AveragedModel(raw, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        averaged = lif_modules(self.average.module)
        self._lif_pairs = [(averaged[name], layer) for name, layer in lif_modules(raw).items()]  # found once

    @property
    def module(self) -> nn.Module:
        return self.average.module

    @property
    def steps(self) -> int:
        return int(self.average.n_averaged)

    @torch.no_grad()
    def update(self) -> None:
        self.average.update_parameters(self.raw)
        for averaged, layer in self._lif_pairs:
            averaged.b.copy_(layer.b)

    def restore(self, state: dict[str, Any], steps: int) -> None:
        """Continue an average saved as ``state`` (a module state dict) after ``steps`` updates (--resume)."""
        self.module.load_state_dict(state)
        self.average.n_averaged.fill_(steps)
