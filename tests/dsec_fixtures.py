"""Builders of tiny hand-made DSEC-layout sequences with known events and disparities (no tests here)."""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import yaml

H, W = 480, 640
FX, CX, CY, BASELINE_M = 570.0, 320.5, 240.5, 0.6
T_OFFSET_US = {"left": 50_000_000_000, "right": 50_000_000_300}


def identity_map() -> np.ndarray:
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    return np.stack([xs, ys], axis=-1)


def write_events(path: Path, x, y, t_abs_us, p, t_offset_us: int | None, with_ms_to_idx: bool = True) -> None:
    """Events at absolute times ``t_abs_us`` stored relative to ``t_offset_us`` (0 when None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.asarray(t_abs_us, dtype=np.int64) - (t_offset_us or 0)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("events/x", data=np.asarray(x, dtype=np.uint16))
        h5.create_dataset("events/y", data=np.asarray(y, dtype=np.uint16))
        h5.create_dataset("events/t", data=t.astype(np.uint32))
        h5.create_dataset("events/p", data=np.asarray(p, dtype=np.uint8))
        if with_ms_to_idx:
            last_ms = int(t[-1]) // 1000 + 1 if t.size else 1
            h5.create_dataset("ms_to_idx", data=np.searchsorted(t, np.arange(last_ms) * 1000, side="left").astype(np.uint64))
        if t_offset_us is not None:
            h5.create_dataset("t_offset", data=np.int64(t_offset_us))


def write_calibration(path: Path, fx: float = FX, baseline_m: float = BASELINE_M) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    q = [[1.0, 0.0, 0.0, -CX], [0.0, 1.0, 0.0, -CY], [0.0, 0.0, 0.0, fx], [0.0, 0.0, 1.0 / baseline_m, 0.0]]
    rect = {"camera_matrix": [fx, fx, CX, CY], "resolution": [W, H]}
    path.write_text(yaml.safe_dump({"intrinsics": {"camRect0": rect, "camRect3": rect},
                                    "disparity_to_depth": {"cams_03": q}}))


def write_rectify_map(path: Path, rect_map: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("rectify_map", data=identity_map() if rect_map is None else rect_map)


def write_disparity(folder: Path, maps: list[np.ndarray], stamps_us: list[int]) -> None:
    """PNGs 000000.png, 000002.png, ... (disparity x 256, 0 = unknown) and timestamps.txt."""
    (folder / "event").mkdir(parents=True, exist_ok=True)
    for k, disp in enumerate(maps):
        values = np.where(np.isfinite(disp), np.round(np.nan_to_num(disp) * 256), 0).astype(np.uint16)
        cv2.imwrite(str(folder / "event" / f"{2 * k:06d}.png"), values)
    (folder / "timestamps.txt").write_text("".join(f"{t}\n" for t in stamps_us))


def sequence_events(rng: np.random.Generator, t_start_us: int, t_end_us: int, count: int):
    t = np.sort(rng.integers(t_start_us, t_end_us, count))
    return rng.integers(0, W, count), rng.integers(0, H, count), t, rng.integers(0, 2, count)


def write_train_sequence(folder: Path, seed: int = 0, frames: int = 4, events_per_camera: int = 3000,
                         disparity_px: float = 12.5, with_indices: bool = True, rect_maps: dict | None = None) -> dict:
    """A sequence of ``frames`` disparity maps at 10 Hz from the left camera's t_offset, random events
    over the whole span; returns the events written per camera (absolute µs)."""
    rng = np.random.default_rng(seed)
    start = T_OFFSET_US["left"]
    stamps = [start + 100_000 * k for k in range(frames)]
    written = {}
    for side in ("left", "right"):
        x, y, t, p = sequence_events(rng, T_OFFSET_US[side], stamps[-1] + 1, events_per_camera)
        write_events(folder / "events" / side / "events.h5", x, y, t, p,
                     T_OFFSET_US[side] if with_indices else None, with_ms_to_idx=with_indices)
        write_rectify_map(folder / "events" / side / "rectify_map.h5", (rect_maps or {}).get(side))
        written[side] = (x, y, t, p)
    disp = np.full((H, W), disparity_px, dtype=np.float32)
    disp[: H // 2] = np.nan  # top half unknown
    write_disparity(folder / "disparity", [disp] * frames, stamps)
    write_calibration(folder / "calibration" / "cam_to_cam.yaml")
    return {"events": written, "stamps": stamps}


def write_test_sequence(folder: Path, csv_dir: Path, seed: int = 1, rows: int = 3) -> list[tuple[int, int]]:
    """A test sequence (events and calibration, no disparity) and its timestamp CSV; returns the rows."""
    rng = np.random.default_rng(seed)
    start = T_OFFSET_US["left"]
    table = [(start + 100_000 * (k + 1), 2 * (k + 1)) for k in range(rows)]
    for side in ("left", "right"):
        x, y, t, p = sequence_events(rng, T_OFFSET_US[side], table[-1][0] + 1, 2000)
        write_events(folder / "events" / side / "events.h5", x, y, t, p, T_OFFSET_US[side])
        write_rectify_map(folder / "events" / side / "rectify_map.h5")
    write_calibration(folder / "calibration" / "cam_to_cam.yaml")
    csv_dir.mkdir(parents=True, exist_ok=True)
    (csv_dir / f"{folder.name}.csv").write_text("# timestamp_us, file_index\n" + "".join(f"{t}, {i}\n" for t, i in table))
    return table


def write_download(root: Path, train: tuple[str, ...] = ("zurich_city_01_a", "zurich_city_02_a", "thun_00_a"),
                   test: tuple[str, ...] = ("zurich_city_13_a",)) -> dict:
    """ROOT/train/<seq>, ROOT/test/<seq>, ROOT/test_disparity_timestamps/<seq>.csv."""
    out = {"train": {}, "test": {}}
    for k, name in enumerate(train):
        out["train"][name] = write_train_sequence(root / "train" / name, seed=k, disparity_px=10.0 + k)
    for k, name in enumerate(test):
        out["test"][name] = write_test_sequence(root / "test" / name, root / "test_disparity_timestamps", seed=10 + k)
    return out
