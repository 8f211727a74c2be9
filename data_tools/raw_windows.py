"""Event windows of a raw recording without ground truth, for inference (``stereo/infer.py``).

Windows end every 1/rate_hz seconds from the sequence start (first end one window after it),
rectified and voxelised exactly like the prepared examples: an MVSEC-layout sequence by name, or one
DSEC sequence folder (its start is the earlier camera's ``t_offset``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from common.errors import UserError
from data_tools.constants import SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX
from data_tools.dsec import HEIGHT_PX, WIDTH_PX, DsecSequence
from data_tools.dsec_files import sequence_folder_files
from data_tools.mvsec import SIDES, find_sequence_files
from data_tools.recording import Recording
from data_tools.voxel import check_encoding, voxelize


def _window_ends_us(recording: Recording, rate_hz: float, window_ms: float) -> list[int]:
    last_s = max(recording.streams[side].t_last_s for side in SIDES)
    return window_ends_us(int((last_s - recording.t0_s) * 1e6) if last_s != float("-inf") else -1, rate_hz, window_ms)


def window_ends_us(span_us: int, rate_hz: float, window_ms: float) -> list[int]:
    """Ends (µs since the start) of the complete windows within ``span_us`` (-1: no events at all)."""
    if rate_hz <= 0 or window_ms <= 0:
        raise UserError(f"rate_hz {rate_hz} and window_ms {window_ms}: expected positive values")
    if span_us < 0:
        return []
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


def count_dsec_windows(folder: Path | str, rate_hz: float = 20, window_ms: float = 50) -> int:
    """How many windows ``iter_dsec_windows`` yields (for a progress bar)."""
    with DsecSequence(sequence_folder_files(Path(folder))) as sequence:
        return len(window_ends_us(sequence.last_event_us - sequence.t0_us, rate_hz, window_ms))


def iter_dsec_windows(folder: Path | str, rate_hz: float = 20, window_ms: float = 50, num_bins: int = 5,
                      encoding: str = "binary") -> Iterator[dict]:
    """The same dicts as ``iter_raw_windows``, from one DSEC sequence folder (480 x 640)."""
    check_encoding(encoding)
    with DsecSequence(sequence_folder_files(Path(folder))) as sequence:
        window_us = int(window_ms * 1000)
        for end in window_ends_us(sequence.last_event_us - sequence.t0_us, rate_hz, window_ms):
            item = {}
            for side in SIDES:
                ev = sequence.window(side, sequence.t0_us + end, window_us)
                item[side] = voxelize(ev.x, ev.y, ev.t_us, ev.p, end - window_us, end, num_bins, HEIGHT_PX, WIDTH_PX,
                                      encoding)
            item["t_us"] = end
            item["t_s"] = (sequence.t0_us + end) * 1e-6
            yield item
