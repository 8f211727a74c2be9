"""The prepared dataset on disk: one compressed HDF5 file per sequence plus ``manifest.json``.

Per sequence file ``<sequence>.hdf5`` (K examples, Blosc-lz4 via hdf5plugin, fast to decode per example):
  frame_index (K,) int64      ground-truth index in the raw recording (MVSEC ``_gt.hdf5`` row, DSEC PNG row)
  file_index  (K,) int64      the dataset's own name of the example (DSEC: the PNG / submission file index;
                              MVSEC: = frame_index). New in version 2.
  t_us        (K,) int64      window end (= ground-truth timestamp), microseconds since the sequence start
  disp_px     (K, H, W) f4    disparity ground truth, NaN where unknown (all NaN in the benchmark split)
  event_mask  (K, H, W) bool  the manifest's ``event_mask_rule``: MVSEC ``last_15000`` (pixels hit by the last
                              15 000 rectified left events up to t_us), DSEC ``window`` (hit by any rectified
                              left event of the example's window)
  left/{x,y}  (N,) uint16, left/t_us (N,) int64, left/p (N,) int8 (+1/-1), left/offsets (K+1,) int64
  right/...   the same for the right camera
Example k's events are rows offsets[k]:offsets[k+1], all in (t_us - window, t_us], rectified.

``manifest.json`` carries everything downstream needs instead of dataset constants: ``dataset``
(mvsec / dsec), ``height``, ``width``, ``intrinsics`` {f, cx, cy}, ``focal_baseline_px_m``,
``max_disparity_in_data_px``, ``event_mask_rule``, per-sequence entries (role, file, counts, and for
DSEC their own intrinsics and f*B) and ``splits`` {train, val, test[, benchmark]} of [sequence, row].
Version 1 folders (before ``file_index``) are read as version 2 with MVSEC defaults.
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from common.errors import UserError
from common.reading import read_json
from data_tools.events import Events
from data_tools.mvsec import SIDES

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "spikedhs-prepared"
FORMAT_VERSION = 2
EVENT_MASK_RULES = {"last_15000": "event-masked (last 15 000 left events)",
                    "window": "event-masked (pixels with a left event in the window)"}
EVENT_FIELDS = ("x", "y", "t_us", "p")


def _compression() -> dict:
    return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))


class SequenceWriter:
    """Writes one sequence's examples as they are cut (no stacking of all frames in memory)."""

    def __init__(self, path: Path, sequence: str, t0_s: float, window_us: int, num_examples: int,
                 height: int, width: int):
        self.h5 = h5py.File(path, "w")
        self.h5.attrs.update({"sequence": sequence, "t0_s": t0_s, "window_us": window_us, "version": FORMAT_VERSION})
        shape, chunks = (num_examples, height, width), (1, height, width) if num_examples else None
        extra = _compression() if num_examples else {}
        self.disp = self.h5.create_dataset("disp_px", shape=shape, dtype=np.float32, chunks=chunks, **extra)
        self.mask = self.h5.create_dataset("event_mask", shape=shape, dtype=bool, chunks=chunks, **extra)
        self.frame_index, self.file_index, self.t_us = [], [], []
        self.events: dict[str, list[Events]] = {side: [] for side in SIDES}
        self.disparity_range = (math.inf, -math.inf)  # of the valid ground truth written so far

    def add(self, frame_index: int, t_us: int, disp_px: np.ndarray, mask: np.ndarray, left: Events,
            right: Events, file_index: int | None = None) -> None:
        row = len(self.frame_index)
        self.disp[row], self.mask[row] = disp_px, mask
        self.frame_index.append(frame_index)
        self.file_index.append(frame_index if file_index is None else file_index)
        known = disp_px[np.isfinite(disp_px) & (disp_px > 0)]
        if known.size:
            self.disparity_range = (min(self.disparity_range[0], float(known.min())),
                                    max(self.disparity_range[1], float(known.max())))
        self.t_us.append(t_us)
        self.events["left"].append(left)
        self.events["right"].append(right)

    def close(self) -> None:
        self.h5.create_dataset("frame_index", data=np.asarray(self.frame_index, dtype=np.int64))
        self.h5.create_dataset("file_index", data=np.asarray(self.file_index, dtype=np.int64))
        self.h5.create_dataset("t_us", data=np.asarray(self.t_us, dtype=np.int64))
        for side in SIDES:
            chunks = self.events[side]
            group = self.h5.create_group(side)
            group.create_dataset("offsets", data=np.concatenate([[0], np.cumsum([len(e) for e in chunks])]).astype(np.int64))
            for field in EVENT_FIELDS:
                parts = [getattr(e, field) for e in chunks] or [getattr(Events.empty(), field)]
                data = np.concatenate(parts)
                if data.size:  # a camera with no event in any kept window is valid: empty datasets, no chunks
                    group.create_dataset(field, data=data, chunks=(min(data.size, 1 << 16),), **_compression())
                else:
                    group.create_dataset(field, data=data)
        self.h5.close()

    def abort(self) -> None:
        """Close without writing the index (the caller failed; the file is a temporary and is removed)."""
        self.h5.close()


def disparity_range_entries(ranges: list[tuple[float, float]]) -> dict:
    """The manifest's ``disparity_range_px`` and ``max_disparity_in_data_px`` (a network must reach it)."""
    low, high = min((r[0] for r in ranges), default=math.inf), max((r[1] for r in ranges), default=-math.inf)
    if not math.isfinite(high):
        return {"disparity_range_px": None, "max_disparity_in_data_px": 0}
    return {"disparity_range_px": [low, high], "max_disparity_in_data_px": math.ceil(high)}


def read_manifest(prepared_dir: Path) -> dict:
    """The manifest of a prepared folder, or a UserError saying how to make one."""
    path = Path(prepared_dir) / MANIFEST_NAME
    manifest = read_json(path, "a prepared-dataset manifest", missing=f"prepared dataset not found; run python "
                         f"data_tools/prepare_mvsec.py --out {prepared_dir}")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise UserError(f"{path}: not a prepared-dataset manifest (expected format '{FORMAT_NAME}')")
    if manifest.get("version") == 1:  # the same layout without file_index, MVSEC only
        manifest = {**manifest, "version": FORMAT_VERSION, "dataset": "mvsec", "event_mask_rule": "last_15000"}
    if manifest.get("version") != FORMAT_VERSION:
        raise UserError(f"{path}: prepared format version {manifest.get('version')}, expected {FORMAT_VERSION}; "
                        f"re-run the prepare tool with --force")
    return manifest


def file_indices(h5: h5py.File) -> np.ndarray:
    """Each example's file index (version 1 files have none: their frame index)."""
    return np.asarray(h5["file_index"] if "file_index" in h5 else h5["frame_index"], dtype=np.int64)


def read_events(group: h5py.Group, index: int) -> Events:
    """Example ``index``'s events of one camera group."""
    start, stop = (int(v) for v in group["offsets"][index:index + 2])
    return Events(*(group[field][start:stop] for field in EVENT_FIELDS))
