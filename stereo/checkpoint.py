"""Checkpoints as plain data: everything evaluation needs, loadable with ``weights_only=True``.

Every checkpoint holds the model weights (LIF b included, as buffers), the architecture (with the
current per-LIF b written back), the full config, and the input format (``ann``, ``in_channels``,
``num_bins``, ``encoding``). ``last.pt`` adds optimiser, scheduler, RNG and DGS state so that
``--resume`` continues exactly where the run stopped.
"""

from __future__ import annotations

import errno
import pickle
import random
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from common.atomic import atomic_path
from common.errors import UserError, user_error_from_os
from models.arch import architecture_from_dict
from models.stereo_net import SpikingStereoNet, current_lif_b

LOW_SPACE_BYTES = 64 * 2**20  # below this, a failed write is taken for a full disk
REQUIRED_KEYS = ("model_state", "architecture", "config", "ann", "in_channels", "num_bins", "encoding",
                 "epoch", "best_val_mde_px")


def model_payload(model: nn.Module, architecture: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The common part of best.pt and last.pt; ``architecture`` gets the model's current b per LIF."""
    arch = dict(architecture)
    if not fields.get("ann"):
        arch["lif_b"] = current_lif_b(model)
    return {"model_state": model.state_dict(), "architecture": arch, **fields}


def epoch_checkpoint_path(folder: Path, epoch: int) -> Path:
    return folder / f"epoch_{epoch:03d}.pt"


def kept_epoch_checkpoints(folder: Path) -> dict[int, Path]:
    """The epoch checkpoints in ``folder`` (train.keep_epoch_checkpoints) by epoch, oldest first."""
    found = {int(p.stem.removeprefix("epoch_")): p for p in folder.glob("epoch_*.pt")
             if p.stem.removeprefix("epoch_").isdigit()}
    return dict(sorted(found.items()))


def keep_epoch_checkpoint(folder: Path, epoch: int, payload: dict[str, Any], keep: int) -> None:
    """Save this epoch's payload as ``folder/epoch_NNN.pt`` and delete those older than the last ``keep``
    epochs (a resumed run overwrites the epochs it repeats)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(epoch_checkpoint_path(folder, epoch), payload)
    for old_epoch, old in kept_epoch_checkpoints(folder).items():
        if old_epoch <= epoch - keep:
            old.unlink()


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def save_checkpoint(path: Path | str, payload: dict[str, Any]) -> None:
    """Write atomically: a reader never sees a half-written checkpoint.

    torch's zip writer reports a full disk as a RuntimeError ("file write failed"); that, with little
    space left, is turned into the ENOSPC it is, so that the CLI says "disk full at <path>".
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            torch.save(payload, tmp)
        except RuntimeError as err:
            if "write failed" in str(err) or free_bytes(path.parent) < LOW_SPACE_BYTES:
                raise user_error_from_os(OSError(errno.ENOSPC, "No space left on device", str(path))) from None
            raise


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states as plain data."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "gauss": gauss},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuples(state["python"]))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    """random.setstate wants the nested tuples back (torch.load may hand lists)."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def read_checkpoint_file(path: Path | str, device: torch.device | str = "cpu",
                         missing_hint: str = "train one with stereo/train.py") -> Any:
    """``torch.load(weights_only=True)`` of a file classified first, so that every bad file is one line.

    Empty, not a zip archive (torch's format), a zip without a pickled object, or refused by the
    weights-only loader (a pickle of arbitrary objects: never loaded) — each says what the file is not,
    and never passes on torch's advice to turn the weights-only safety off.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found ({missing_hint})")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: not a checkpoint (the file is empty, 0 bytes)")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a checkpoint (not a PyTorch zip archive; is it a text or a legacy file?)")
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("data.pkl") for name in archive.namelist()):
                raise UserError(f"{path}: not a checkpoint (a zip archive without a saved PyTorch object)")
    except zipfile.BadZipFile:
        raise UserError(f"{path}: not a checkpoint (a damaged zip archive; was it cut short?)") from None
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"{path}: not a readable checkpoint (it holds objects other than tensors and plain data, "
                        "which are never loaded)") from None
    except Exception as err:  # torch raises RuntimeError, KeyError, EOFError, ... for damaged archives
        first = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise UserError(f"{path}: not a readable checkpoint (damaged: {first})") from None


def load_checkpoint(path: Path | str, device: torch.device | str = "cpu", search: bool = False) -> dict[str, Any]:
    """Read a checkpoint of this project: a network's (best.pt, last.pt) or, with ``search``, a search's
    (search_last.pt); a missing, foreign or wrong-kind file is a one-line UserError."""
    path = Path(path)
    if search:
        ckpt = read_checkpoint_file(path, device, missing_hint="start the search without --resume")
        if not isinstance(ckpt, dict) or ckpt.get("kind") != "search":
            raise UserError(f"{path}: not a search checkpoint (stereo/search.py writes search_last.pt)")
        return ckpt
    ckpt = read_checkpoint_file(path, device)
    if not isinstance(ckpt, dict) or (missing := [k for k in REQUIRED_KEYS if k not in ckpt]):
        what = f"missing {', '.join(missing)}" if isinstance(ckpt, dict) else "not a dict"
        raise UserError(f"{path}: not a SpikeDHS-Stereo checkpoint ({what})")
    return ckpt


def load_model_from_checkpoint(path: Path | str, device: torch.device | str = "cpu", option: str = "",
                               want_ann: bool | None = None) -> tuple[SpikingStereoNet, dict[str, Any]]:
    """The network of a checkpoint, on ``device`` in eval mode, and the checkpoint dict itself.

    ``option`` (e.g. ``--checkpoint``) prefixes the one-line errors; ``want_ann`` checks that the file
    is (or is not) an ANN twin.
    """
    where = f"{option} {path}" if option else str(path)
    if not Path(path).is_file():
        raise UserError(f"{where}: checkpoint not found (train one with stereo/train.py{' --ann' if want_ann else ''})")
    ckpt = load_checkpoint(path, device)
    if want_ann is not None and bool(ckpt["ann"]) != want_ann:
        expected = "an ANN twin checkpoint (stereo/train.py --ann)" if want_ann else "a spiking (SNN) checkpoint"
        raise UserError(f"{where}: expected {expected}, got {'an ANN twin' if ckpt['ann'] else 'an SNN'}")
    arch = architecture_from_dict(ckpt["architecture"], f"{path} (embedded architecture)")
    model = SpikingStereoNet(arch, in_channels=int(ckpt["in_channels"]), ann=bool(ckpt["ann"]))
    if (problem := state_mismatch(model.state_dict(), ckpt["model_state"])) is not None:
        raise UserError(f"{path}: weights do not fit the embedded architecture ({problem})")
    model.load_state_dict(ckpt["model_state"])
    return model.to(device).eval(), ckpt


def state_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str | None:
    """None when ``found`` has exactly the tensors of ``expected`` with their shapes, else the first difference."""
    if missing := sorted(set(expected) - set(found)):
        return f"{len(missing)} tensor(s) missing, e.g. {missing[0]}"
    if unexpected := sorted(set(found) - set(expected)):
        return f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[0]}"
    for name, tensor in expected.items():
        if tuple(found[name].shape) != tuple(tensor.shape):
            return f"{name} has shape {tuple(found[name].shape)}, expected {tuple(tensor.shape)}"
    return None
