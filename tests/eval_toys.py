"""Tiny prepared datasets and checkpoints for the evaluation CLI tests (not a test file)."""

from __future__ import annotations

import math
from pathlib import Path

from stereo_toys import toy_architecture

from data_tools import make_synthetic, prepare_mvsec
from models.stereo_net import SpikingStereoNet
from stereo.checkpoint import model_payload, save_checkpoint
from stereo.config import Config, config_to_dict

TOY_NUM_BINS = 2


def make_recording(root: Path, seconds: float = 0.6) -> tuple[Path, Path]:
    """A two-sequence synthetic recording (raw MVSEC layout) and its prepared dataset."""
    raw, prepared = root / "raw", root / "prepared"
    make_synthetic.main(["--out", str(raw), "--sequences", "2", "--seconds", str(seconds)])
    prepare_mvsec.main(["--mvsec-root", str(raw), "--out", str(prepared)])
    return raw, prepared


def make_checkpoint(path: Path, ann: bool = False, filter_multiplier: int = 2, encoding: str = "binary",
                    in_channels: int = 2, seed: int = 0) -> Path:
    """An untrained toy network saved exactly like stereo/train.py's best.pt."""
    import torch

    torch.manual_seed(seed)
    arch = toy_architecture(filter_multiplier=filter_multiplier)
    arch.num_bins = TOY_NUM_BINS
    model = SpikingStereoNet(arch, in_channels=in_channels, ann=ann)
    payload = model_payload(model, arch.to_dict(), config=config_to_dict(Config()), ann=ann, in_channels=in_channels,
                            num_bins=TOY_NUM_BINS, encoding=encoding, epoch=0, best_val_mde_px=math.nan)
    save_checkpoint(path, payload)
    return path
