"""Reading DSEC sequences (Gehrig et al., RA-L 2021) with user-facing errors: events, maps, disparity, calibration.

Per camera ``events.h5`` holds ``events/{x,y,t,p}`` (raw pixels, µs since ``t_offset``, polarity 0/1),
``ms_to_idx`` (first event at or after each millisecond) and ``t_offset``. A window is located through
``ms_to_idx`` and only its rows are read; files without it (older exports) fall back to a coarse index
of every k-th timestamp, files without ``t_offset`` to 0, as DSEC's own slicer does. Each camera keeps its
own time base: a window ending at absolute time T is (T - t_offset - window, T - t_offset] in that camera.
Disparity PNGs are 16-bit, disparity x 256, 0 = no ground truth, in the rectified left event camera.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filter DSEC's events are compressed with)
import numpy as np
import yaml

from common.errors import UserError
from data_tools.dsec_files import SIDES, DsecSequenceFiles
from data_tools.events import Events
from data_tools.mvsec import Rectifier, get_dataset, open_hdf5, read_rows

HEIGHT_PX, WIDTH_PX = 480, 640
DISPARITY_SCALE = 256.0
# Default maximum disparity of a DSEC network: a multiple of 24 covering DSEC's published range (README).
NETWORK_MAX_DISPARITY_PX = 192
COARSE_INDEX_POINTS = 4096
EVENT_FIELDS = ("x", "y", "t", "p")


class DsecEventFile:
    """One camera's ``events.h5``; ``window`` returns raw events of a time window in the camera's time base."""

    def __init__(self, path: Path):
        self.path = path
        self.h5 = open_hdf5(path)
        self.fields = {name: get_dataset(self.h5, f"events/{name}", (), 1) for name in EVENT_FIELDS}
        sizes = {name: int(d.shape[0]) for name, d in self.fields.items()}
        if len(set(sizes.values())) != 1:
            raise UserError(f"{path}: events/x, y, t, p have different lengths {sizes}; expected one per event")
        self.size = sizes["t"]
        self.missing = [name for name in ("ms_to_idx", "t_offset") if name not in self.h5]
        self.t_offset_us = int(np.asarray(self.h5["t_offset"][()]).reshape(-1)[0]) if "t_offset" in self.h5 else 0
        self.ms_to_idx = self._read_ms_to_idx() if "ms_to_idx" in self.h5 else None
        if self.ms_to_idx is None:
            self.stride = max(1, -(-self.size // COARSE_INDEX_POINTS))
            self.coarse_t = self._checked_t(read_rows(self.fields["t"], 0, self.size)[:: self.stride], 0, self.stride)

    def _read_ms_to_idx(self) -> np.ndarray:
        index = np.asarray(read_rows(get_dataset(self.h5, "ms_to_idx", (), 1), 0, None), dtype=np.int64)
        if index.size and (index[0] != 0 or np.any(np.diff(index) < 0) or index[-1] > self.size):
            raise UserError(f"{self.path}: 'ms_to_idx' is not a non-decreasing index starting at 0 within the "
                            f"{self.size} events")
        return index

    def _checked_t(self, t: np.ndarray, first_row: int, step: int = 1) -> np.ndarray:
        t = np.asarray(t, dtype=np.int64)
        if (bad := np.flatnonzero(np.diff(t) < 0)).size:
            raise UserError(f"{self.path}: events/t is not sorted (near event {first_row + (int(bad[0]) + 1) * step}); "
                            "expected non-decreasing microseconds")
        return t

    def _row_bounds(self, t_start_us: int, t_end_us: int) -> tuple[int, int]:
        """Rows [lo, hi) holding every event with t_start < t <= t_end (a superset, refined by the caller)."""
        if self.ms_to_idx is not None:
            n_ms = self.ms_to_idx.size
            lo = int(self.ms_to_idx[min(max(t_start_us // 1000, 0), n_ms - 1)]) if t_start_us >= 0 and n_ms else 0
            end_ms = t_end_us // 1000 + 1
            hi = int(self.ms_to_idx[end_ms]) if 0 <= end_ms < n_ms else (0 if end_ms < 0 else self.size)
            return lo, hi
        lo = max(0, (int(np.searchsorted(self.coarse_t, t_start_us, side="right")) - 1) * self.stride)
        hi = min(self.size, int(np.searchsorted(self.coarse_t, t_end_us, side="right")) * self.stride)
        return lo, hi

    def window(self, t_start_us: int, t_end_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Raw x, y (int64), t (int64 µs, camera time base) and p (+1/-1 int8) with t_start < t <= t_end."""
        lo, hi = self._row_bounds(t_start_us, t_end_us)
        t = self._checked_t(read_rows(self.fields["t"], lo, hi), lo)
        first = lo + int(np.searchsorted(t, t_start_us, side="right"))
        stop = lo + int(np.searchsorted(t, t_end_us, side="right"))
        x, y, p = (np.asarray(read_rows(self.fields[name], first, stop)) for name in ("x", "y", "p"))
        if p.size and ((bad := (p != 0) & (p != 1)).any()):
            raise UserError(f"{self.path}: events/p holds {int(p[bad][0])} (event {first + int(np.argmax(bad))}); "
                            "expected polarity 0 or 1")
        return (x.astype(np.int64), y.astype(np.int64), t[first - lo:stop - lo],
                np.where(p > 0, np.int8(1), np.int8(-1)))

    def close(self) -> None:
        self.h5.close()


def load_rectify_map(path: Path) -> Rectifier:
    """``rectify_map`` (480, 640, 2): rectified (x, y) of every raw pixel, as a rounding table lookup."""
    with open_hdf5(path) as h5:
        if "rectify_map" not in h5 or not isinstance(h5["rectify_map"], h5py.Dataset):
            raise UserError(f"{path}: dataset 'rectify_map' missing")
        dset = h5["rectify_map"]
        if dset.shape != (HEIGHT_PX, WIDTH_PX, 2):
            raise UserError(f"{path}: 'rectify_map' has shape {dset.shape}, expected ({HEIGHT_PX}, {WIDTH_PX}, 2)")
        values = np.asarray(read_rows(dset, 0, None), dtype=np.float64)
    if not np.isfinite(values).all():
        raise UserError(f"{path}: 'rectify_map' holds NaN or inf values")
    return Rectifier(values[..., 0], values[..., 1])


def read_disparity_png(path: Path) -> np.ndarray:
    """Disparity in pixels (float32 480 x 640), NaN where the PNG holds 0 (no ground truth)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise UserError(f"{path}: cannot be read as a PNG image")
    if image.dtype != np.uint16 or image.ndim != 2:
        depth = {np.dtype(np.uint8): "8-bit"}.get(image.dtype, str(image.dtype))
        raise UserError(f"{path}: a {depth} image with {1 if image.ndim == 2 else image.shape[2]} channel(s); "
                        "expected a 16-bit single-channel disparity PNG (disparity x 256)")
    if image.shape != (HEIGHT_PX, WIDTH_PX):
        raise UserError(f"{path}: {image.shape[0]} x {image.shape[1]} pixels, expected {HEIGHT_PX} x {WIDTH_PX}")
    disp = image.astype(np.float32) / DISPARITY_SCALE
    disp[image == 0] = np.nan
    return disp


def read_integer_rows(path: Path, columns: int, form: str) -> np.ndarray:
    """Comma-separated integer rows (``#`` lines and blank lines skipped) as int64 (N, columns)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot be read ({err.__class__.__name__})") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            values = [int(v) for v in line.split(",")]
        except ValueError:
            values = []
        if len(values) != columns:
            raise UserError(f"{path}: line {number} is {line.strip()!r}; expected '{form}'")
        rows.append(values)
    if not rows:
        raise UserError(f"{path}: no rows; expected lines of '{form}'")
    table = np.asarray(rows, dtype=np.int64)
    if np.any(np.diff(table[:, 0]) <= 0):
        raise UserError(f"{path}: timestamps are not strictly increasing")
    return table


@dataclass
class DsecCalibration:
    """Rectified left event camera intrinsics and the stereo f*B (from the reprojection matrix Q)."""

    fx: float
    fy: float
    cx: float
    cy: float
    baseline_m: float
    focal_baseline_px_m: float

    def to_dict(self) -> dict:
        return {"f": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "baseline_m": self.baseline_m,
                "focal_baseline_px_m": self.focal_baseline_px_m}


def _lookup(tree: object, keys: tuple[str, ...], path: Path) -> object:
    node = tree
    for depth, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            raise UserError(f"{path}: key '{'/'.join(keys[:depth + 1])}' missing (expected DSEC's cam_to_cam.yaml)")
        node = node[key]
    return node


def read_calibration(path: Path) -> DsecCalibration:
    """``intrinsics/camRect0/camera_matrix`` [fx, fy, cx, cy] and f*B = Q[2][3] / Q[3][2] of ``cams_03``."""
    try:
        tree = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise UserError(f"{path}: not a readable YAML file ({str(err).splitlines()[0]})") from None
    matrix = np.asarray(_lookup(tree, ("intrinsics", "camRect0", "camera_matrix"), path), dtype=object)
    q = np.asarray(_lookup(tree, ("disparity_to_depth", "cams_03"), path), dtype=object)
    try:
        fx, fy, cx, cy = (float(v) for v in matrix.reshape(-1))
        q = q.astype(np.float64).reshape(4, 4)
    except (TypeError, ValueError):
        raise UserError(f"{path}: expected camRect0 camera_matrix [fx, fy, cx, cy] and a 4 x 4 cams_03 matrix") from None
    if q[3, 2] == 0 or q[2, 3] == 0 or not np.isfinite(q).all():
        raise UserError(f"{path}: disparity_to_depth/cams_03 has no finite focal length and baseline (Q[2][3], Q[3][2])")
    return DsecCalibration(fx, fy, cx, cy, 1.0 / abs(q[3, 2]), abs(q[2, 3] / q[3, 2]))


@dataclass
class Example:
    """One example to cut: the window's absolute end time, the file index, and the ground-truth PNG if any."""

    t_end_us: int
    file_index: int
    disparity_png: Path | None


def ground_truth_examples(files: DsecSequenceFiles) -> list[Example]:
    """Every disparity map but the first (no events precede it), paired in name order with timestamps.txt."""
    pngs = sorted(files.disparity_dir.glob("*.png"))
    if not pngs:
        raise UserError(f"{files.disparity_dir}: no disparity PNGs")
    try:
        indices = [int(p.stem) for p in pngs]
    except ValueError:
        raise UserError(f"{files.disparity_dir}: PNG names must be file indices like 000042.png") from None
    stamps = read_integer_rows(files.timestamps, 1, "timestamp_us")[:, 0]
    if stamps.size != len(pngs):
        raise UserError(f"{files.timestamps}: {stamps.size} timestamps for {len(pngs)} PNGs in "
                        f"{files.disparity_dir}; expected one per PNG")
    return [Example(int(t), i, p) for t, i, p in zip(stamps[1:], indices[1:], pngs[1:])]


def benchmark_examples(files: DsecSequenceFiles) -> list[Example]:
    """The timestamps a submission must predict, from the test sequence's CSV."""
    table = read_integer_rows(files.benchmark_csv, 2, "timestamp_us, file_index")
    return [Example(int(t), int(i), None) for t, i in table]


class DsecSequence:
    """One sequence opened and validated up front: per camera events, rectifier and time base."""

    def __init__(self, files: DsecSequenceFiles):
        self.files = files
        self.sequence = files.sequence
        self.calibration = read_calibration(files.calibration)
        self.examples = {"train": ground_truth_examples, "test": benchmark_examples}.get(files.role, lambda f: [])(files)
        self.cameras = {side: DsecEventFile(files.events[side]) for side in SIDES}
        self.rectifiers = {side: load_rectify_map(files.rectify_maps[side]) for side in SIDES}
        self.t0_us = min(camera.t_offset_us for camera in self.cameras.values())

    @property
    def last_event_us(self) -> int:
        """Absolute time of the latest event of either camera (-1 without events)."""
        return max((cam.t_offset_us + int(read_rows(cam.fields["t"], cam.size - 1, cam.size)[0]) for cam in
                    self.cameras.values() if cam.size), default=-1)

    @property
    def num_events(self) -> int:
        return sum(camera.size for camera in self.cameras.values())

    def window(self, side: str, t_end_us: int, window_us: int) -> Events:
        """Rectified events of (t_end - window, t_end] (absolute µs), time relative to ``t0_us``."""
        camera = self.cameras[side]
        end = t_end_us - camera.t_offset_us
        x, y, t, p = camera.window(end - window_us, end)
        keep, rx, ry = self.rectifiers[side](x, y)
        return Events(rx, ry, t[keep] + (camera.t_offset_us - self.t0_us), p[keep])

    def close(self) -> None:
        for camera in self.cameras.values():
            camera.close()

    def __enter__(self) -> DsecSequence:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
