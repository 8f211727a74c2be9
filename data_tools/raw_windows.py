"""Event windows of a raw recording without ground truth, for inference (``stereo/infer.py``).

Windows end every 1/rate_hz seconds from the sequence start (first end one window after it),
rectified and voxelised exactly like the prepared examples.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from common.errors import UserError
from data_tools.constants import SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX
from data_tools.mvsec import SIDES, find_sequence_files
from data_tools.recording import Recording
from data_tools.voxel import check_encoding, voxelize


def _window_ends_us(recording: Recording, rate_hz: float, window_ms: float) -> list[int]:
    if rate_hz <= 0 or window_ms <= 0:
        raise UserError(f"rate_hz {rate_hz} and window_ms {window_ms}: expected positive values")
    last_s = max(recording.streams[side].t_last_s for side in SIDES)
    if last_s == float("-inf"):
        return []
    span_us = int((last_s - recording.t0_s) * 1e6)
    step_us, window_us = 1e6 / rate_hz, int(window_ms * 1000)
    ends, k = [], 0
    while True:
        end = window_us + int(round(k * step_us))
        if end > span_us:
            return ends
        ends.append(end)
        k += 1


def count_raw_windows(mvsec_root: Path | str, sequence: str, rate_hz: float = 20, window_ms: float = 50) -> int:
    """How many windows ``iter_raw_windows`` yields (for a progress bar)."""
    with Recording(find_sequence_files(Path(mvsec_root), sequence, need_gt=False), need_gt=False) as recording:
        return len(_window_ends_us(recording, rate_hz, window_ms))


def iter_raw_windows(mvsec_root: Path | str, sequence: str, rate_hz: float = 20, window_ms: float = 50,
                     num_bins: int = 5, encoding: str = "binary") -> Iterator[dict]:
    """Yield dicts: left, right (T, C, H, W) float32; t_us (window end, relative); t_s (absolute seconds)."""
    check_encoding(encoding)
    with Recording(find_sequence_files(Path(mvsec_root), sequence, need_gt=False), need_gt=False) as recording:
        window_us = int(window_ms * 1000)
        for end in _window_ends_us(recording, rate_hz, window_ms):
            item = {}
            for side in SIDES:
                ev = recording.cameras[side].window(end - window_us, end)
                item[side] = voxelize(ev.x, ev.y, ev.t_us, ev.p, end - window_us, end, num_bins,
                                      SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX, encoding)
            item["t_us"] = end
            item["t_s"] = recording.t0_s + end * 1e-6
            yield item
