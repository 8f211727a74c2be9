"""What every evaluation CLI shares: datasets opened with user-facing errors, the input-format check, and
one prediction per example (full 260x346 frame, batch of one, no crop)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from common.errors import UserError
from data_tools.dataset import StereoEventDataset


def open_split(data_dir: Path, split: str, num_bins: int, encoding: str, max_examples: int = 0,
               option: str = "--data") -> StereoEventDataset:
    """The prepared dataset's split voxelised for a network (or, with num_bins=1/count, for SGBM)."""
    if not Path(data_dir).is_dir():
        raise UserError(f"{option} {data_dir}: prepared dataset folder not found (make one with data_tools/prepare_mvsec.py)")
    dataset = StereoEventDataset(data_dir, split, num_bins=num_bins, encoding=encoding, max_examples=max_examples)
    if len(dataset) == 0:
        raise UserError(f"{option} {data_dir}: the '{split}' split has no examples")
    return dataset


def check_input_format(dataset: StereoEventDataset, ckpt: dict[str, Any], path: Path) -> None:
    """The checkpoint must read the tensors this dataset makes (channels follow the encoding)."""
    if dataset.in_channels != int(ckpt["in_channels"]):
        raise UserError(f"{path}: the network takes {ckpt['in_channels']} input channels, but encoding "
                        f"'{dataset.encoding}' gives {dataset.in_channels}")


@torch.no_grad()
def predict(model: nn.Module, left: torch.Tensor, right: torch.Tensor, device: torch.device) -> np.ndarray:
    """(T, C, H, W) views of one example -> (H, W) float32 disparity in pixels."""
    disp = model(left.unsqueeze(0).to(device), right.unsqueeze(0).to(device))
    return disp[0].float().cpu().numpy()
