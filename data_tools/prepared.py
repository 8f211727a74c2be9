"""The prepared dataset on disk: one compressed HDF5 file per sequence plus ``manifest.json``.

Per sequence file ``<sequence>.hdf5`` (K examples, Blosc-lz4 via hdf5plugin, fast to decode per example):
  frame_index (K,) int64      ground-truth index in the raw ``_gt.hdf5``
  t_us        (K,) int64      window end (= depth timestamp), microseconds since the sequence start
  disp_px     (K, H, W) f4    disparity ground truth, NaN where the depth is unknown
  event_mask  (K, H, W) bool  pixels hit by the last 15 000 rectified left events up to t_us
  left/{x,y}  (N,) uint16, left/t_us (N,) int64, left/p (N,) int8 (+1/-1), left/offsets (K+1,) int64
  right/...   the same for the right camera
Example k's events are rows offsets[k]:offsets[k+1], all in (t_us - window, t_us], rectified.
"""

from __future__ import annotations

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
FORMAT_VERSION = 1
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
        self.frame_index, self.t_us = [], []
        self.events: dict[str, list[Events]] = {side: [] for side in SIDES}

    def add(self, frame_index: int, t_us: int, disp_px: np.ndarray, mask: np.ndarray, left: Events,
            right: Events) -> None:
        row = len(self.frame_index)
        self.disp[row], self.mask[row] = disp_px, mask
        self.frame_index.append(frame_index)
        self.t_us.append(t_us)
        self.events["left"].append(left)
        self.events["right"].append(right)

    def close(self) -> None:
        self.h5.create_dataset("frame_index", data=np.asarray(self.frame_index, dtype=np.int64))
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


def read_manifest(prepared_dir: Path) -> dict:
    """The manifest of a prepared folder, or a UserError saying how to make one."""
    path = Path(prepared_dir) / MANIFEST_NAME
    manifest = read_json(path, "a prepared-dataset manifest", missing=f"prepared dataset not found; run python "
                         f"data_tools/prepare_mvsec.py --out {prepared_dir}")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise UserError(f"{path}: not a prepared-dataset manifest (expected format '{FORMAT_NAME}')")
    if manifest.get("version") != FORMAT_VERSION:
        raise UserError(f"{path}: prepared format version {manifest.get('version')}, expected {FORMAT_VERSION}; "
                        f"re-run prepare_mvsec.py --force")
    return manifest


def read_events(group: h5py.Group, index: int) -> Events:
    """Example ``index``'s events of one camera group."""
    start, stop = (int(v) for v in group["offsets"][index:index + 2])
    return Events(*(group[field][start:stop] for field in EVENT_FIELDS))
