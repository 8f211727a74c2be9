"""Finding and reading MVSEC-layout recordings (SPEC §2) with user-facing errors.

Real MVSEC files hold tens of millions of events, so events are never loaded whole: a coarse
time index (every k-th timestamp) plus one small block read locates any time, and only the rows
a window needs are read. Every file problem becomes a :class:`UserError` naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers compression filters for h5py)
import numpy as np

from common.errors import UserError
from common.reading import read_json
from data_tools.constants import FOCAL_BASELINE_PX_M, SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX, SUPPORTED_FAMILIES

SYNTHETIC_MANIFEST = "manifest.json"
SYNTHETIC_KIND = "synthetic_mvsec"
EVENTS_KEY = "davis/{side}/events"
DEPTH_KEY = "davis/left/depth_image_rect"
DEPTH_TS_KEY = "davis/left/depth_image_rect_ts"
SIDES = ("left", "right")
COARSE_INDEX_POINTS = 2048
READ_BLOCK_ROWS = 1 << 18  # 8 MiB of events: windows are read in time order, so one block serves many


def sequence_family(sequence: str) -> str:
    """'indoor_flying1' -> 'indoor_flying'."""
    return re.sub(r"\d+$", "", sequence)


def read_synthetic_manifest(root: Path, kind: str = SYNTHETIC_KIND) -> dict | None:
    """The generator's manifest when ``root`` holds a synthetic recording of this kind (layout), else None."""
    path = Path(root) / SYNTHETIC_MANIFEST
    if not path.is_file():
        return None
    manifest = read_json(path, "a synthetic recording's manifest")
    if not isinstance(manifest, dict) or manifest.get("kind") != kind:
        return None
    return manifest


def check_family(sequence: str, synthetic: dict | None) -> str:
    """Family of a sequence, or a UserError for unsupported / unknown families."""
    family = sequence_family(sequence)
    if synthetic is not None:
        if sequence not in synthetic["sequences"]:
            raise UserError(f"sequence '{sequence}': not in the synthetic recording "
                            f"(has {', '.join(synthetic['sequences'])})")
        return synthetic["family"]
    if family in SUPPORTED_FAMILIES:
        return family
    if family in FOCAL_BASELINE_PX_M:
        raise UserError(f"sequence '{sequence}': the {family} family is not supported yet "
                        f"(supported: {', '.join(SUPPORTED_FAMILIES)})")
    raise UserError(f"sequence '{sequence}': unknown sequence family '{family}' "
                    f"(expected {', '.join(SUPPORTED_FAMILIES)}N or a synthetic recording)")


def _find(name: str, folders: list[Path]) -> Path:
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    raise UserError(f"{name} not found; searched: {', '.join(str(f / name) for f in folders)}")


@dataclass
class SequenceFiles:
    sequence: str
    family: str
    data: Path
    gt: Path | None
    maps: dict[str, Path] = field(default_factory=dict)  # keys left_x, left_y, right_x, right_y


def find_sequence_files(root: Path, sequence: str, need_gt: bool = True) -> SequenceFiles:
    """Locate data, ground truth and maps in the layouts users keep (SPEC §2)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--mvsec-root {root}: directory not found")
    synthetic = read_synthetic_manifest(root)
    family = check_family(sequence, synthetic)
    data_dirs = [root, root / family, root / sequence]
    map_dirs = [root, root / f"{family}_calib", root / family, root / family / f"{family}_calib"]
    data = _find(f"{sequence}_data.hdf5", data_dirs)
    gt = _find(f"{sequence}_gt.hdf5", data_dirs) if need_gt else None
    maps = {f"{side}_{axis}": _find(f"{family}_{side}_{axis}_map.txt", map_dirs)
            for side in SIDES for axis in ("x", "y")}
    return SequenceFiles(sequence, family, data, gt, maps)


def open_hdf5(path: Path) -> h5py.File:
    """Open read-only; a non-HDF5 or truncated file is a UserError naming it."""
    try:
        return h5py.File(path, "r")
    except OSError as err:
        reason = "truncated" if "truncated" in str(err) else "not an HDF5 file or corrupt"
        raise UserError(f"{path}: cannot be read as HDF5 ({reason})") from None


def get_dataset(h5: h5py.File, key: str, shape_tail: tuple[int, ...], ndim: int) -> h5py.Dataset:
    """A dataset with the expected rank and trailing shape, or a UserError naming it."""
    path = h5.filename
    try:
        dset = h5[key]
    except KeyError:
        raise UserError(f"{path}: dataset '{key}' missing") from None
    except OSError:
        raise UserError(f"{path}: dataset '{key}' cannot be read (truncated or corrupt file)") from None
    if not isinstance(dset, h5py.Dataset) or dset.ndim != ndim or tuple(dset.shape[1:]) != shape_tail:
        got = dset.shape if isinstance(dset, h5py.Dataset) else "a group"
        want = "(N, " + ", ".join(map(str, shape_tail)) + ")" if shape_tail else "(N,)"
        raise UserError(f"{path}: dataset '{key}' has shape {got}, expected {want}")
    return dset


def read_rows(dset: h5py.Dataset, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) with read failures (truncated data) turned into a UserError."""
    try:
        return dset[start:stop]
    except (OSError, ValueError):
        raise UserError(f"{dset.file.filename}: dataset '{dset.name.lstrip('/')}' cannot be read "
                        f"(truncated or corrupt file)") from None


class EventStream:
    """One camera's ``davis/<side>/events`` (N, 4): x, y, t (absolute s), p; time search without a full load."""

    def __init__(self, h5: h5py.File, side: str):
        self.key = EVENTS_KEY.format(side=side)
        self.dset = get_dataset(h5, self.key, (4,), 2)
        self.path = h5.filename
        self.size = int(self.dset.shape[0])
        self.stride = max(1, -(-self.size // COARSE_INDEX_POINTS))
        self.coarse_t = self._read_coarse() if self.size else np.zeros(0)
        self._check_sorted(self.coarse_t, 0, self.stride)
        self._block_start, self._block = 0, np.zeros((0, 4))

    def _rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) served from one cached block read ahead (compressed chunks decode once)."""
        end = self._block_start + len(self._block)
        if not (self._block_start <= start and stop <= end):
            block_start = max(0, start - READ_BLOCK_ROWS // 4)  # requests step back a little (event mask)
            block_stop = min(self.size, max(stop, start + READ_BLOCK_ROWS))
            self._block_start = block_start
            self._block = np.asarray(read_rows(self.dset, block_start, block_stop), dtype=np.float64)
            self._check_finite(self._block, block_start)
            self._check_sorted(self._block[:, 2], block_start, 1)
        return self._block[start - self._block_start:stop - self._block_start]

    def _read_coarse(self) -> np.ndarray:
        if self.stride == 1:
            return read_rows(self.dset, 0, self.size)[:, 2].astype(np.float64)
        try:
            return self.dset[:: self.stride, 2].astype(np.float64)
        except (OSError, ValueError):
            raise UserError(f"{self.path}: dataset '{self.key}' cannot be read (truncated or corrupt file)") from None

    def _check_finite(self, rows: np.ndarray, first_row: int) -> None:
        bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
        if bad.size:
            raise UserError(f"{self.path}: dataset '{self.key}' holds NaN or infinite values (row {first_row + int(bad[0])}); "
                            "expected finite x, y, t, polarity in every row")

    def _check_sorted(self, t: np.ndarray, first_row: int, step: int) -> None:
        bad = np.flatnonzero(np.diff(t) < 0)
        if bad.size:
            row = first_row + (int(bad[0]) + 1) * step
            raise UserError(f"{self.path}: dataset '{self.key}' timestamps are not sorted (near row {row})")

    @property
    def t_first_s(self) -> float:
        return float(self.coarse_t[0]) if self.size else float("inf")

    @property
    def t_last_s(self) -> float:
        return float(read_rows(self.dset, self.size - 1, self.size)[0, 2]) if self.size else float("-inf")

    def search(self, t_s: float) -> int:
        """First row with t > t_s (numpy's searchsorted side='right')."""
        if not self.size:
            return 0
        block = int(np.searchsorted(self.coarse_t, t_s, side="right"))
        if block == 0:
            return 0
        start = (block - 1) * self.stride
        stop = min(self.size, start + self.stride)
        t_block = self._rows(start, stop)[:, 2]
        return start + int(np.searchsorted(t_block, t_s, side="right"))

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as float64 (n, 4), checked to be time-sorted."""
        return self._rows(max(0, start), min(self.size, stop))


def load_map(path: Path) -> np.ndarray:
    """One rectification map as float64 (260, 346), or a UserError naming the file."""
    try:
        values = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable text map ({str(err).splitlines()[0]})") from None
    if values.shape != (SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX):
        raise UserError(f"{path}: map has {values.shape[0]} rows x {values.shape[1]} columns, expected "
                        f"{SENSOR_HEIGHT_PX} rows x {SENSOR_WIDTH_PX} columns")
    if not np.isfinite(values).all():
        raise UserError(f"{path}: map holds NaN or inf values")
    return values


class Rectifier:
    """Raw pixel -> rectified pixel by table lookup: round the mapped coordinate, drop what leaves the frame."""

    def __init__(self, x_map: np.ndarray, y_map: np.ndarray):
        height, width = x_map.shape
        self.height, self.width = height, width
        rx = np.floor(x_map + 0.5).astype(np.int64)
        ry = np.floor(y_map + 0.5).astype(np.int64)
        self.inside = ((rx >= 0) & (rx < width) & (ry >= 0) & (ry < height)).ravel()
        self.table_x = np.where(self.inside.reshape(height, width), rx, 0).ravel().astype(np.uint16)
        self.table_y = np.where(self.inside.reshape(height, width), ry, 0).ravel().astype(np.uint16)
        self.all_inside = bool(self.inside.all())

    @classmethod
    def from_files(cls, x_path: Path, y_path: Path) -> Rectifier:
        return cls(load_map(x_path), load_map(y_path))

    def __call__(self, x_raw: np.ndarray, y_raw: np.ndarray) -> tuple[np.ndarray | slice, np.ndarray, np.ndarray]:
        """Kept events (an index array, or ``slice(None)`` when all are kept) and their rectified x, y (uint16)."""
        if x_raw.size and (x_raw.min() < 0 or x_raw.max() >= self.width or y_raw.min() < 0 or y_raw.max() >= self.height):
            on_sensor = (x_raw >= 0) & (x_raw < self.width) & (y_raw >= 0) & (y_raw < self.height)
            rows = np.flatnonzero(on_sensor)
            keep, x, y = self(x_raw[rows], y_raw[rows])
            return rows[keep], x, y
        raw = (y_raw * self.width + x_raw).astype(np.intp)
        keep = slice(None) if self.all_inside else np.flatnonzero(self.inside[raw])
        if not self.all_inside and keep.size == raw.size:
            keep = slice(None)
        raw = raw[keep]
        return keep, self.table_x[raw], self.table_y[raw]
