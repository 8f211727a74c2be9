"""Distillation from a trained teacher (``train.teacher``), typically the ANN twin, into the SNN.

The student is trained on its disparity loss plus ``train.distill_weight`` x the Kullback-Leibler
divergence KL(p_teacher || p_student) between the two networks' distributions over disparity (the
softmin of the full-resolution cost that the soft argmin regresses from), averaged over every pixel of
the crop. Why the distribution and not the teacher's disparity: a disparity target adds little where
ground truth exists, while the distribution says how sure the teacher is and where its second choices
lie (ANN-to-SNN knowledge distillation, e.g. Xu et al., CVPR 2023). The teacher runs frozen in eval mode
on its own input (its num_bins and encoding, voxelised from the same crop: data_tools.dataset).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import UserError


class Teacher:
    """A frozen network from a checkpoint, and the input format its batches must carry."""

    def __init__(self, path: Path | str, device: torch.device, max_disparity_px: int) -> None:
        from stereo.checkpoint import load_model_from_checkpoint

        self.path = Path(path)
        self.model, ckpt = load_model_from_checkpoint(self.path, device, option="train.teacher")
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        if self.model.max_disp != max_disparity_px:
            raise UserError(f"train.teacher {self.path}: predicts up to {self.model.max_disp} px, the student up to "
                            f"{max_disparity_px} px; the two distributions over disparity must match")
        self.input_format = (int(ckpt["num_bins"]), str(ckpt["encoding"]))

    @torch.no_grad()
    def cost(self, batch: dict[str, Any]) -> torch.Tensor:
        """(B, maxdisp, H, W) cost of the teacher (in eval mode since loading) on the batch's teacher views."""
        return self.model(batch["teacher_left"], batch["teacher_right"], return_cost=True)[1]


def distillation_loss(student_cost: torch.Tensor, teacher_cost: torch.Tensor) -> torch.Tensor:
    """KL(softmin(teacher) || softmin(student)) over disparity, summed per pixel and averaged over pixels."""
    per_entry = F.kl_div(F.log_softmax(-student_cost, dim=1), F.log_softmax(-teacher_cost, dim=1),
                         reduction="none", log_target=True)
    return per_entry.sum(dim=1).mean()


def teacher_input_format(path: str) -> tuple[int, str] | None:
    """(num_bins, encoding) the configured teacher was trained on, for the training set to voxelise; None
    without a teacher."""
    from stereo.checkpoint import load_checkpoint

    if not path:
        return None
    if not Path(path).is_file():
        raise UserError(f"train.teacher {path}: checkpoint not found (train the teacher first, e.g. stereo/train.py --ann)")
    ckpt = load_checkpoint(path)
    return int(ckpt["num_bins"]), str(ckpt["encoding"])


def open_teacher(path: str, device: torch.device, student: nn.Module) -> Teacher | None:
    """The configured teacher, or None when ``train.teacher`` is empty."""
    return Teacher(path, device, int(student.max_disp)) if path else None
