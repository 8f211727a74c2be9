"""Weight averages: an exponential moving average of the weights, validated and saved in place of the
raw weights during training, and the uniform average of a run's epoch checkpoints afterwards.

Why: with 16 validation frames and a batch of 2, the validation MDE of one set of weights swings by
±0.1 px from epoch to epoch (docs/learning.md), so ``best.pt`` picks a lucky epoch rather than a good
network. Averaging the weights over the last few hundred steps (Polyak averaging) smooths that out.
``torch.optim.swa_utils.AveragedModel`` does the averaging, BN statistics included
(``use_buffers=True``); the LIF sharpness b is a choice made by DGS, not a weight, so it is copied
from the raw network, never averaged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from common.errors import UserError
from models.neurons import lif_modules
from stereo.checkpoint import load_checkpoint, state_mismatch


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


def average_checkpoints(paths: list[Path]) -> dict[str, Any]:
    """The uniform average of several checkpoints of one run (stochastic weight averaging, afterwards).

    Why: the exponential average spans ~100 steps; the validation error of a run still wanders over
    epochs (docs/learning.md), so an equal-weight average of the last epochs' weights is a second,
    longer smoothing that needs no new training. Floating tensors (weights and BN statistics, as the
    EMA does) are averaged; integer counters and every LIF's b (DGS's choice, not a weight) come from
    the last checkpoint, which also gives every other field. All must share one architecture (b aside)
    and one input format.
    """
    if not paths:
        raise UserError("average_checkpoints: no checkpoint given")
    ckpts = [load_checkpoint(path) for path in paths]
    last = ckpts[-1]
    reference = _comparable(last)
    for path, ckpt in zip(paths, ckpts):
        if _comparable(ckpt) != reference:
            raise UserError(f"{path}: another architecture or input format than {paths[-1]} "
                            "(only checkpoints of one run can be averaged)")
        if (problem := state_mismatch(last["model_state"], ckpt["model_state"])) is not None:
            raise UserError(f"{path}: weights differ in layout from {paths[-1]} ({problem})")
    kept = {f"{name}.b" for name in last["architecture"].get("lif_b", {})}
    state = {}
    for key, value in last["model_state"].items():
        if value.is_floating_point() and key not in kept:
            state[key] = torch.stack([ckpt["model_state"][key] for ckpt in ckpts]).mean(dim=0)
        else:
            state[key] = value
    return {**last, "model_state": state, "averaged_epochs": [int(ckpt["epoch"]) for ckpt in ckpts]}


def _comparable(ckpt: dict[str, Any]) -> tuple:
    arch = {key: value for key, value in ckpt["architecture"].items() if key != "lif_b"}
    return (json.dumps(arch, sort_keys=True), bool(ckpt["ann"]), int(ckpt["in_channels"]), int(ckpt["num_bins"]),
            str(ckpt["encoding"]))
