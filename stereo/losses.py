"""The training objective (SPEC §7): smooth-L1 (or plain L1, ``train.loss``) on valid pixels, plus an optional
firing-rate penalty, an optional distillation term (``train.teacher``) and an optional loss on the cost
volume (``train.volume_weight``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.firing import FiringRateRecorder
from models.neurons import unwrap_model
from stereo.distillation import Teacher, distillation_loss
from stereo.runtime import to_device

LossFn = Callable[[nn.Module, dict[str, Any]], torch.Tensor]
# Smooth-L1 is SPEC §7's objective; plain L1 is the metric itself (MDE), whose gradient does not fade
# for errors below 1 px, where smooth-L1's does.
DISPARITY_LOSSES = {"smooth_l1": F.smooth_l1_loss, "l1": F.l1_loss}
DEFAULT_DISPARITY_LOSS = "smooth_l1"


def disparity_loss(pred_disp_px: torch.Tensor, batch: dict[str, torch.Tensor],
                   kind: str = DEFAULT_DISPARITY_LOSS) -> torch.Tensor:
    """The ``kind`` loss over the valid ground-truth pixels of the batch (0 with the graph kept if none)."""
    valid = batch["valid"]
    if not bool(valid.any()):
        return pred_disp_px.sum() * 0.0
    return DISPARITY_LOSSES[kind](pred_disp_px[valid], batch["disp_px"][valid])


@dataclass(frozen=True)
class RatePenalty:
    """The firing-rate term: ``weight_at(step)`` x the mean excess rate over the layers under ``layers``.

    The schedule (section train: rate_penalty, rate_start_step, rate_ramp_steps): off before optimiser
    step ``start_step`` (0-based), then ``weight`` x min(1, (step - start_step + 1) / ramp_steps), i.e. a
    linear ramp over ``ramp_steps`` steps (0 = at once). Targets: each layer is penalised only above
    its target rate (``layer_targets`` by module-name prefix, longest prefix wins, else ``target``).
    """

    weight: float = 0.0
    layers: tuple[str, ...] = ("feature", "matching")
    start_step: int = 0
    ramp_steps: int = 0
    target: float = 0.0
    layer_targets: tuple[tuple[str, float], ...] = ()

    def weight_at(self, step: int) -> float:
        if self.weight <= 0 or step < self.start_step:
            return 0.0
        if self.ramp_steps <= 0:
            return self.weight
        return self.weight * min(1.0, (step - self.start_step + 1) / self.ramp_steps)


def training_loss(model: nn.Module, raw: nn.Module, batch: dict[str, torch.Tensor], rate: RatePenalty | None = None,
                  step: int = 0, kind: str = DEFAULT_DISPARITY_LOSS, teacher: Teacher | None = None,
                  distill_weight: float = 0.0, volume_head: nn.Module | None = None,
                  volume_weight: float = 0.0) -> torch.Tensor:
    """Disparity loss of ``model`` (maybe DDP-wrapped) plus the firing-rate term of the LIF layers of
    ``raw`` at optimiser step ``step`` (none without ``rate``, as for the ANN twin), plus
    ``distill_weight`` x the distillation term against ``teacher`` (stereo.distillation) if given, plus
    ``volume_weight`` x the same disparity loss of ``volume_head`` on the cost volume
    (stereo.volume_supervision) if given."""
    weight = rate.weight_at(step) if rate is not None else 0.0
    recorder = FiringRateRecorder(raw, list(rate.layers)) if weight > 0 else contextlib.nullcontext()
    with recorder as rec:
        outputs = model(batch["left"], batch["right"], return_cost=teacher is not None,
                        return_volume=volume_head is not None)
        disparity, *extras = outputs if isinstance(outputs, tuple) else (outputs,)
        loss = disparity_loss(disparity, batch, kind)
        if teacher is not None:
            loss = loss + distill_weight * distillation_loss(extras.pop(0), teacher.cost(batch))
        if volume_head is not None:
            height, width = disparity.shape[-2:]
            loss = loss + volume_weight * disparity_loss(volume_head(extras.pop(0), height, width), batch, kind)
        if weight > 0:
            loss = loss + weight * rec.penalty(dict(rate.layer_targets), rate.target)
    return loss


def batch_loss(device: torch.device, rate: RatePenalty | None = None, kind: str = DEFAULT_DISPARITY_LOSS) -> LossFn:
    """loss_fn(model, batch) for DGS and the search steps: ``training_loss`` of a batch moved to ``device``
    with a constant rate weight (the rates are those of the model passed in, which DGS may have swapped
    layers of)."""
    def loss_fn(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return training_loss(model, unwrap_model(model), to_device(batch, device), rate, kind=kind)
    return loss_fn
