"""Validation inside the loops: MDE and 1PA by the published protocol, firing rates, precise BN."""

from __future__ import annotations

import contextlib
import itertools
import math
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from common.metrics import image_metrics
from models.firing import FiringRateRecorder
from stereo.distributed import DistContext, all_reduce_sum
from stereo.runtime import to_device

RATE_PREFIXES = ["feature", "matching"]


@torch.no_grad()
def validate(raw: nn.Module, loader: DataLoader, focal_baseline_px_m: float, ctx: DistContext, ann: bool,
             show: bool) -> dict[str, Any]:
    """MDE / 1PA per image over valid pixels, plain mean over images (all ranks); rates per LIF layer.

    Every rank validates its own shard; sums are added over ranks. Rates are weighted by each rank's
    number of examples (all full frames, so this is the rate over the whole validation set).
    """
    raw.eval()
    recorder = FiringRateRecorder(raw, RATE_PREFIXES) if not ann else contextlib.nullcontext()
    names = sorted(recorder.layers) if not ann else []
    sums = torch.zeros(3, dtype=torch.float64, device=ctx.device)  # sum MDE, sum 1PA, images with valid pixels
    examples = 0
    with recorder as rec:
        for batch in tqdm(loader, desc="  validate", leave=False, disable=not show):
            batch = to_device(batch, ctx.device)
            pred = raw(batch["left"], batch["right"])
            examples += pred.shape[0]
            for i in range(pred.shape[0]):
                metrics = image_metrics(pred[i], batch["disp_px"][i], batch["valid"][i], focal_baseline_px_m)
                if metrics is not None:
                    sums += torch.tensor([metrics["mde_px"], metrics["1pa"], 1.0], dtype=torch.float64, device=ctx.device)
        rates = rec.rates() if not ann else {}
    sums = all_reduce_sum(sums, ctx)
    weighted = torch.tensor([rates.get(n, 0.0) * examples for n in names] + [examples], dtype=torch.float64,
                            device=ctx.device)
    weighted = all_reduce_sum(weighted, ctx)
    total_examples = float(weighted[-1])
    images = int(sums[2])
    return {
        "mde_px": float(sums[0] / images) if images else math.nan,
        "1pa": float(sums[1] / images) if images else math.nan,
        "images": images,
        "rates": {n: float(weighted[i]) / max(total_examples, 1.0) for i, n in enumerate(names)},
    }


@torch.no_grad()
def recalibrate_batchnorm(raw: nn.Module, loader: DataLoader, num_batches: int, ctx: DistContext) -> None:
    """Precise BN: replace every BN's running statistics by their average over ``num_batches`` training
    batches (forward only, training mode), averaged over ranks so every rank evaluates the same network."""
    norms = [m for m in raw.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
    raw.train()
    for batch in itertools.islice(loader, num_batches):
        batch = to_device(batch, ctx.device)
        raw(batch["left"], batch["right"])
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
        for stat in (norm.running_mean, norm.running_var):
            stat.copy_(all_reduce_sum(stat, ctx) / ctx.world_size)
