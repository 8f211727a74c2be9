"""One MVSEC-layout sequence opened and validated up front: event streams, rectifiers, depth.

Everything a later step reads is checked here (files, dataset names and shapes, map shapes,
time order), so a bad input fails before any output or progress bar appears.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from common.errors import UserError
from data_tools.constants import SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX
from data_tools.events import RectifiedCamera
from data_tools.mvsec import (
    DEPTH_KEY,
    DEPTH_TS_KEY,
    SIDES,
    EventStream,
    Rectifier,
    SequenceFiles,
    get_dataset,
    open_hdf5,
    read_rows,
)


@lru_cache(maxsize=8)
def _rectifier(x_path: Path, y_path: Path) -> Rectifier:
    return Rectifier.from_files(x_path, y_path)


class Recording:
    """Validated handles on one sequence; ``cameras[side]`` gives rectified event windows."""

    def __init__(self, files: SequenceFiles, need_gt: bool = True):
        self.files = files
        self.sequence = files.sequence
        self._handles = [open_hdf5(files.data)]
        streams = {side: EventStream(self._handles[0], side) for side in SIDES}
        rectifiers = {side: _rectifier(files.maps[f"{side}_x"], files.maps[f"{side}_y"]) for side in SIDES}
        self.depth = self.depth_ts_s = None
        starts = [streams[side].t_first_s for side in SIDES]
        if need_gt:
            gt = open_hdf5(files.gt)
            self._handles.append(gt)
            self.depth = get_dataset(gt, DEPTH_KEY, (SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX), 3)
            ts = get_dataset(gt, DEPTH_TS_KEY, (), 1)
            self.depth_ts_s = np.asarray(read_rows(ts, 0, ts.shape[0]), dtype=np.float64)
            if ts.shape[0] != self.depth.shape[0]:
                raise UserError(f"{files.gt}: '{DEPTH_TS_KEY}' has {ts.shape[0]} entries, expected "
                                f"{self.depth.shape[0]} (one per depth image)")
            if np.any(np.diff(self.depth_ts_s) <= 0):
                raise UserError(f"{files.gt}: dataset '{DEPTH_TS_KEY}' timestamps are not strictly increasing")
            if self.depth_ts_s.size:
                starts.append(float(self.depth_ts_s[0]))
        finite = [s for s in starts if np.isfinite(s)]
        if not finite:
            raise UserError(f"{files.data}: no events and no depth timestamps")
        self.t0_s = float(min(finite))
        self.streams = streams
        self.cameras = {side: RectifiedCamera(streams[side], rectifiers[side], self.t0_s) for side in SIDES}

    def depth_m(self, index: int) -> np.ndarray:
        """Depth image ``index`` (float32 metres, NaN/0/inf where unknown)."""
        return np.asarray(read_rows(self.depth, index, index + 1)[0], dtype=np.float32)

    def close(self) -> None:
        for handle in self._handles:
            handle.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
