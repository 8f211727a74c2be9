"""Rectified event windows in integer microseconds, and the event mask (SPEC §2, §8).

Time is kept as int64 microseconds relative to a sequence start ``t0_s`` (absolute float64
seconds), so 50 ms windows and 10 ms bins are exact whatever the Unix epoch of the recording.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_tools.mvsec import EventStream, Rectifier


@dataclass
class Events:
    """Rectified events, time-sorted: x, y uint16; t_us int64 (relative); p int8 (+1/-1)."""

    x: np.ndarray
    y: np.ndarray
    t_us: np.ndarray
    p: np.ndarray

    def __len__(self) -> int:
        return int(self.t_us.shape[0])

    def select(self, index) -> Events:
        return Events(self.x[index], self.y[index], self.t_us[index], self.p[index])

    @classmethod
    def empty(cls) -> Events:
        return cls(np.zeros(0, np.uint16), np.zeros(0, np.uint16), np.zeros(0, np.int64), np.zeros(0, np.int8))


def seconds_to_us(t_s: np.ndarray, t0_s: float) -> np.ndarray:
    """Absolute float64 seconds -> int64 microseconds since t0_s, rounded to the nearest microsecond."""
    return np.rint((np.asarray(t_s, dtype=np.float64) - t0_s) * 1e6).astype(np.int64)


def event_mask(events: Events, count: int, height: int, width: int) -> np.ndarray:
    """Pixels hit by the last ``count`` events (all of them if fewer): bool (H, W)."""
    mask = np.zeros(height * width, dtype=bool)
    last = events.select(slice(max(0, len(events) - count), None))
    mask[last.y.astype(np.int64) * width + last.x.astype(np.int64)] = True
    return mask.reshape(height, width)


class RectifiedCamera:
    """One camera of a recording: reads only the rows a request needs, rectifies them.

    Requests move forward in time and overlap (the event mask reaches back before each window),
    so the rectified rows of the previous request are kept and only new rows are rectified.
    """

    def __init__(self, stream: EventStream, rectifier: Rectifier, t0_s: float):
        self.stream = stream
        self.rectifier = rectifier
        self.t0_s = t0_s
        self._cache_rows = (0, 0)  # raw rows [start, stop) that _cache holds, rectified
        self._cache, self._cache_row = Events.empty(), np.zeros(0, np.int64)

    def _rectify(self, start: int, stop: int) -> tuple[Events, np.ndarray]:
        rows = self.stream.read(start, stop)
        keep, x, y = self.rectifier(rows[:, 0], rows[:, 1])
        polarity = np.where(rows[keep, 3] > 0, np.int8(1), np.int8(-1))
        row_index = np.arange(start, start + len(rows))[keep]
        return Events(x, y, seconds_to_us(rows[keep, 2], self.t0_s), polarity), row_index

    def _rows_to_events(self, start: int, stop: int) -> Events:
        """Rectified events of raw rows [start, stop), reusing the previous request's overlap."""
        c_start, c_stop = self._cache_rows
        if c_start <= start <= c_stop <= stop:
            first = int(np.searchsorted(self._cache_row, start))
            new, new_rows = self._rectify(c_stop, stop)
            old = self._cache.select(slice(first, None))
            events = Events(*(np.concatenate([getattr(old, f), getattr(new, f)]) for f in ("x", "y", "t_us", "p")))
            rows = np.concatenate([self._cache_row[first:], new_rows])
        else:
            events, rows = self._rectify(start, stop)
        self._cache_rows, self._cache, self._cache_row = (start, stop), events, rows
        return events

    def _row_at_us(self, t_us: int) -> int:
        """First row whose rounded microsecond time exceeds t_us (half a microsecond of slack)."""
        return self.stream.search(self.t0_s + (t_us + 0.5) * 1e-6)

    def window(self, t_start_us: int, t_end_us: int) -> Events:
        """All rectified events with t_start_us < t_us <= t_end_us."""
        return self.recent(t_start_us, t_end_us, 0)

    def recent(self, t_start_us: int, t_end_us: int, min_count: int) -> Events:
        """Rectified events up to t_end_us covering (t_start_us, t_end_us] and at least the last min_count."""
        end = self._row_at_us(t_end_us)
        start = self._row_at_us(t_start_us)
        want = start if min_count == 0 else min(start, end - int(min_count * 1.2) - 64)
        while True:
            want = max(0, want)
            events = self._rows_to_events(want, end)
            events = events.select(slice(0, int(np.searchsorted(events.t_us, t_end_us, side="right"))))
            if min_count == 0 or len(events) >= min_count or want == 0:
                first = min(int(np.searchsorted(events.t_us, t_start_us, side="right")), max(0, len(events) - min_count))
                return events.select(slice(first, None))
            want = end - 2 * (end - want)
