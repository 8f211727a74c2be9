"""Builders of tiny MVSEC-layout recordings for the data tests (no tests in this file)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from data_tools.mvsec import SYNTHETIC_KIND

H, W = 260, 346
T0_S = 1506117898.0


def identity_maps() -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    return xs, ys


def write_maps(folder: Path, family: str, maps: dict[str, np.ndarray] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = identity_maps()
    maps = maps or {}
    for side in ("left", "right"):
        for axis, default in (("x", xs), ("y", ys)):
            np.savetxt(folder / f"{family}_{side}_{axis}_map.txt", maps.get(f"{side}_{axis}", default), fmt="%.4f")


def write_sequence(folder: Path, name: str, left: np.ndarray, right: np.ndarray, depth_m: np.ndarray,
                   depth_ts_s: np.ndarray) -> None:
    """Events are (N, 4) float64 rows x, y, t (absolute s), p."""
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / f"{name}_data.hdf5", "w") as h5:
        h5.create_dataset("davis/left/events", data=left)
        h5.create_dataset("davis/right/events", data=right)
    with h5py.File(folder / f"{name}_gt.hdf5", "w") as h5:
        h5.create_dataset("davis/left/depth_image_rect", data=depth_m.astype(np.float32))
        h5.create_dataset("davis/left/depth_image_rect_ts", data=depth_ts_s)


def write_manifest(folder: Path, family: str, names: list[str], val_fraction: float = 0.5) -> None:
    manifest = {"kind": SYNTHETIC_KIND, "version": 1, "family": family, "sequences": names,
                "split": {"train": names[1:], "eval": names[0], "val_fraction": val_fraction,
                          "shuffle_seed": 0, "drop_first_windows": 1}}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def random_events(rng: np.random.Generator, n: int, span_s: float) -> np.ndarray:
    t = np.sort(T0_S + rng.uniform(0, span_s, n))
    return np.stack([rng.integers(0, W, n), rng.integers(0, H, n), t, rng.choice([-1.0, 1.0], n)], axis=1)


def simple_recording(folder: Path, family: str = "handmade", frames: int = 4, depth_value: float = 2.0,
                     events_per_window: int = 50, seed: int = 0, maps: dict | None = None) -> list[str]:
    """Two sequences of random events at 20 Hz depth frames; returns the sequence names."""
    rng = np.random.default_rng(seed)
    names = [f"{family}1", f"{family}2"]
    for name in names:
        n = events_per_window * frames
        left, right = (random_events(rng, n, 0.05 * (frames - 1)) for _ in range(2))
        depth = np.full((frames, H, W), depth_value, dtype=np.float32)
        write_sequence(folder, name, left, right, depth, T0_S + 0.05 * np.arange(frames))
    write_maps(folder, family, maps)
    write_manifest(folder, family, names)
    return names
