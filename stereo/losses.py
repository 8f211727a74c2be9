"""The training objective (SPEC §7): smooth-L1 on valid pixels, plus an optional firing-rate penalty."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.firing import FiringRateRecorder
from stereo.runtime import to_device

LossFn = Callable[[nn.Module, dict[str, Any]], torch.Tensor]


def disparity_loss(pred_disp_px: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Smooth-L1 over the valid ground-truth pixels of the batch (0 with the graph kept if none)."""
    valid = batch["valid"]
    if not bool(valid.any()):
        return pred_disp_px.sum() * 0.0
    return F.smooth_l1_loss(pred_disp_px[valid], batch["disp_px"][valid])


def training_loss(model: nn.Module, raw: nn.Module, batch: dict[str, torch.Tensor], rate_penalty: float = 0.0,
                  rate_layers: list[str] | None = None) -> torch.Tensor:
    """Disparity loss of ``model`` (maybe DDP-wrapped) plus ``rate_penalty`` x the mean firing rate of the
    LIF layers of ``raw`` under the ``rate_layers`` name prefixes (0 = no penalty, as for the ANN twin)."""
    recorder = FiringRateRecorder(raw, rate_layers or []) if rate_penalty > 0 else contextlib.nullcontext()
    with recorder as rec:
        loss = disparity_loss(model(batch["left"], batch["right"]), batch)
        if rate_penalty > 0:
            loss = loss + rate_penalty * rec.penalty()
    return loss


def batch_loss(device: torch.device, rate_penalty: float = 0.0, rate_layers: list[str] | None = None) -> LossFn:
    """loss_fn(model, batch) for DGS and the search steps: ``training_loss`` of a batch moved to ``device``
    (the rates are those of the model passed in, which DGS may have swapped layers of)."""
    def loss_fn(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        raw = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        return training_loss(model, raw, to_device(batch, device), rate_penalty, rate_layers)
    return loss_fn
