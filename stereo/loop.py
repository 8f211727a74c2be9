"""The one epoch loop that search and retraining share; each passes in its own per-step work.

Per epoch: reseed the samplers and the random crops from (seed, epoch) (so ``--resume`` continues
exactly), DGS on its schedule, one pass of ``step`` over the training loader (a weight step, or a
weight step plus an architecture step), the schedulers, optionally precise BN statistics,
validation on full frames, and the caller's ``end_epoch`` (checkpoints, outputs, logs). With
``val_every_steps`` it also validates every that many steps into the learning curve (curve.csv).
"""

from __future__ import annotations

import csv
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm import tqdm

from common.atomic import atomic_path
from models.dgs import DGSScheduler
from stereo.distributed import DistContext, all_reduce_sum
from stereo.losses import DEFAULT_DISPARITY_LOSS, batch_loss
from stereo.runtime import to_device
from stereo.validation import recalibrate_batchnorm, validate

StepFn = Callable[[dict[str, Any], int, int], dict[str, float]]  # (batch, epoch, optimiser step index)


def make_loaders(train_set: Dataset, val_set: Dataset, batch_size: int, val_batch_size: int, num_workers: int,
                 ctx: DistContext, seed: int) -> tuple[DistributedSampler, DataLoader, DataLoader]:
    """Shuffled training shards (reshuffled per epoch by seed + epoch) and disjoint validation shards."""
    sampler = DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)
    pin = ctx.device.type == "cuda"
    train_loader = DataLoader(train_set, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                              pin_memory=pin, drop_last=False)
    val_shard = Subset(val_set, range(ctx.rank, len(val_set), ctx.world_size))
    val_loader = DataLoader(val_shard, batch_size=val_batch_size, num_workers=num_workers, pin_memory=pin)
    return sampler, train_loader, val_loader


@dataclass
class EpochResult:
    """What ``end_epoch`` receives: the 1-based epoch, its learning rate, the mean of each named step
    loss over all steps and ranks, the validation result and the epoch's wall time."""

    epoch: int
    lr: float
    losses: dict[str, float]
    val: dict[str, Any]
    seconds: float


@dataclass
class EpochLoop:
    """Everything the loop needs; ``step(batch, epoch, index)`` does one step's work on a batch already
    on the device (``index``: 0-based optimiser steps before it, over the whole run) and returns its
    named losses (the first is the one the learning curve follows)."""

    raw: nn.Module
    step: StepFn
    end_epoch: Callable[[EpochResult], None]
    train_loader: DataLoader
    val_loader: DataLoader
    samplers: list[DistributedSampler]
    crop_dataset: Dataset  # reseeded per epoch when it has set_epoch (random crops)
    schedulers: list[Any]
    epochs: int
    focal_baseline_px_m: float
    ann: bool = False
    dgs: DGSScheduler | None = None
    dgs_max_batches: int = 0
    loss: str = DEFAULT_DISPARITY_LOSS  # the disparity loss DGS scores its candidates by (train.loss)
    precise_bn_batches: int = 0
    val_every_steps: int = 0
    log_every: int = 1
    desc: str = "epoch"
    curve: LearningCurve | None = None
    evaluated: nn.Module | None = None  # the network validated, if not raw (a weight average)


def run_epochs(loop: EpochLoop, start_epoch: int, ctx: DistContext) -> None:
    """Epochs ``start_epoch`` .. ``loop.epochs - 1`` (0-based) of the shared skeleton."""
    show, device = ctx.is_main, ctx.device
    evaluated = loop.raw if loop.evaluated is None else loop.evaluated
    index = start_epoch * len(loop.train_loader)
    for epoch in range(start_epoch, loop.epochs):
        started = time.perf_counter()
        for sampler in loop.samplers:
            sampler.set_epoch(epoch)
        if hasattr(loop.crop_dataset, "set_epoch"):  # random crops drawn from (seed, epoch): exact --resume
            loop.crop_dataset.set_epoch(epoch)
        loop.raw.train()  # before DGS too: validation left the network in eval mode
        if loop.dgs is not None and loop.dgs.should_run(epoch):
            loop.dgs.run(loop.raw, itertools.islice(loop.train_loader, loop.dgs_max_batches), batch_loss(device, kind=loop.loss), epoch)
        sums: dict[str, list[float]] = {}  # name -> [sum, count]
        bar = tqdm(loop.train_loader, desc=f"{loop.desc} {epoch + 1}/{loop.epochs}", leave=False, disable=not show)
        for steps, batch in enumerate(bar, start=1):
            step_started = time.perf_counter()
            losses = loop.step(to_device(batch, device), epoch, index)
            index += 1
            for name, value in losses.items():
                total = sums.setdefault(name, [0.0, 0.0])
                total[0], total[1] = total[0] + value, total[1] + 1
            if loop.curve is not None:
                loop.curve.add_step(next(iter(losses.values())), time.perf_counter() - step_started)
            if steps % max(loop.log_every, 1) == 0:
                bar.set_postfix({name: f"{s / c:.3f}" for name, (s, c) in sums.items()})
            if loop.curve is not None and loop.val_every_steps > 0 and loop.curve.step % loop.val_every_steps == 0:
                loop.curve.record(epoch + 1, validate(evaluated, loop.val_loader, loop.focal_baseline_px_m, ctx,
                                                      loop.ann, show=False), ctx)
                loop.raw.train()
        lr = float(loop.schedulers[0].optimizer.param_groups[0]["lr"])
        for scheduler in loop.schedulers:
            scheduler.step()
        means = _mean_over_ranks(sums, ctx)
        if loop.precise_bn_batches > 0:
            recalibrate_batchnorm(evaluated, loop.train_loader, loop.precise_bn_batches, ctx)
        val = validate(evaluated, loop.val_loader, loop.focal_baseline_px_m, ctx, loop.ann, show)
        if loop.curve is not None and loop.val_every_steps > 0 and loop.curve.step % loop.val_every_steps:
            loop.curve.record(epoch + 1, val, ctx)  # the epoch's end is a point of the curve too
        loop.end_epoch(EpochResult(epoch + 1, lr, means, val, time.perf_counter() - started))


def _mean_over_ranks(sums: dict[str, list[float]], ctx: DistContext) -> dict[str, float]:
    """Mean of each named loss over every step of every rank (NaN for a name no rank stepped)."""
    names = sorted(sums)
    totals = torch.tensor([v for n in names for v in sums[n]], dtype=torch.float64, device=ctx.device)
    totals = all_reduce_sum(totals, ctx).tolist() if names else []
    return {n: totals[2 * i] / totals[2 * i + 1] if totals[2 * i + 1] else math.nan for i, n in enumerate(names)}


class LearningCurve:
    """Validation MDE against optimiser step and training seconds (validation time excluded): curve.csv.

    Each row: step, epoch, train_time_s, train_loss (mean since the previous row), val_mde_px, val_1pa.
    On resume the clock continues from the checkpoint and rows after its step are dropped.
    """

    def __init__(self, path: Path, start_step: int, ckpt: dict[str, Any] | None, write: bool) -> None:
        self.path, self.step, self.write = path, start_step, write
        self.train_time_s = float(ckpt.get("train_time_s", 0.0)) if ckpt else 0.0
        self._losses: list[float] = []
        self.rows = [r for r in read_csv_rows(path) if int(r["step"]) <= start_step] if ckpt else []

    def add_step(self, loss: float, seconds: float) -> None:
        self.step += 1
        self.train_time_s += seconds
        self._losses.append(loss)

    def record(self, epoch: int, val: dict[str, Any], ctx: DistContext) -> None:
        loss = float(all_reduce_sum(torch.tensor([sum(self._losses) / max(len(self._losses), 1)], device=ctx.device),
                                    ctx)) / ctx.world_size
        self._losses = []
        self.rows.append({"step": self.step, "epoch": epoch, "train_time_s": round(self.train_time_s, 3),
                          "train_loss": loss, "val_mde_px": val["mde_px"], "val_1pa": val["1pa"]})
        if self.write:
            write_csv_rows(self.path, self.rows)


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_csv_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        out = csv.DictWriter(handle, fieldnames=list(rows[-1]))
        out.writeheader()
        out.writerows(rows)
