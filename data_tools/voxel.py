"""Spike tensors from events (SPEC §3), vectorised: one flat index per event, no Python loop.

Bins follow the example window of SPEC §2, which is half-open on the left: the window is
(t_start, t_end] and bin k covers (t_start + k*dt, t_start + (k+1)*dt] with dt = (t_end - t_start)/T.
An event exactly on t_end lands in the last bin; one exactly on t_start belongs to the previous window.
Channel 0 holds positive events, channel 1 negative ones (``signed`` has one channel).
"""

from __future__ import annotations

import numpy as np

from common.errors import UserError

ENCODING_CHANNELS = {"binary": 2, "count": 2, "signed": 1}


def check_encoding(encoding: str) -> None:
    """Raise a UserError naming the encoding option when it is unknown."""
    if encoding not in ENCODING_CHANNELS:
        raise UserError(f"encoding '{encoding}': expected one of {', '.join(ENCODING_CHANNELS)}")


def _bin_edges(t_start_us: int, t_end_us: int, num_bins: int) -> np.ndarray:
    """Integer edges e_k = t_start + floor(k * duration / T); bin k holds e_k < t <= e_{k+1}, exactly."""
    duration = int(t_end_us) - int(t_start_us)
    return np.array([int(t_start_us) + (k * duration) // num_bins for k in range(num_bins + 1)], dtype=np.int64)


def bin_indices(t_us: np.ndarray, t_start_us: int, t_end_us: int, num_bins: int) -> np.ndarray:
    """Bin of each event in (t_start, t_end]; -1 outside. Exact on integer microseconds."""
    edges = _bin_edges(t_start_us, t_end_us, num_bins)
    bins = np.searchsorted(edges, np.asarray(t_us, dtype=np.int64), side="left") - 1
    bins[bins >= num_bins] = -1
    return bins


def _flat_indices(x, y, t_us, p, t_start_us, t_end_us, num_bins, height, width):
    """Flat index into (T, 2, H, W) (channel 1 = negative) of every event inside the window and the frame."""
    t_us = np.asarray(t_us, dtype=np.int64)
    edges = _bin_edges(t_start_us, t_end_us, num_bins)
    if t_us.size and np.all(t_us[1:] >= t_us[:-1]):  # time-sorted (always, in practice): slices per bin
        bounds = np.searchsorted(t_us, edges, side="right")
        span = slice(int(bounds[0]), int(bounds[-1]))
        bins = np.repeat(np.arange(num_bins, dtype=np.intp), np.diff(bounds))
    else:
        span = slice(None)
        bins = np.searchsorted(edges, t_us, side="left").astype(np.intp) - 1
    x, y, p = np.asarray(x)[span], np.asarray(y)[span], np.asarray(p)[span]
    if not np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.intp)
    flat = y.astype(np.intp) * width + x
    flat += bins * (2 * height * width)
    flat += (p <= 0) * (height * width)
    inside = None
    if x.size and (x.min() < 0 or x.max() >= width or y.min() < 0 or y.max() >= height):
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    if span == slice(None):
        in_window = (bins >= 0) & (bins < num_bins)
        inside = in_window if inside is None else inside & in_window
    if inside is not None:
        return flat[inside], p[inside]
    return flat, p


def voxelize(
    x: np.ndarray,
    y: np.ndarray,
    t_us: np.ndarray,
    p: np.ndarray,
    t_start_us: int,
    t_end_us: int,
    num_bins: int,
    height: int,
    width: int,
    encoding: str = "binary",
) -> np.ndarray:
    """Events -> float32 (T, C, H, W). Events outside the window or the frame are ignored."""
    check_encoding(encoding)
    if num_bins < 1 or t_end_us <= t_start_us:
        raise UserError(f"voxelize: need num_bins >= 1 and t_end_us > t_start_us, got {num_bins}, "
                        f"({t_start_us}, {t_end_us}]")
    size = num_bins * 2 * height * width
    flat, p = _flat_indices(x, y, t_us, p, t_start_us, t_end_us, num_bins, height, width)
    shape = (num_bins, 2, height, width)
    if encoding == "signed":  # sign of (positive - negative) counts; integer bincount beats weighted
        counts = np.bincount(flat, minlength=size).reshape(shape).astype(np.int32)
        return np.sign(counts[:, :1] - counts[:, 1:]).astype(np.float32)
    if encoding == "count":
        return np.bincount(flat, minlength=size).astype(np.float32).reshape(shape)
    out = np.zeros(size, dtype=np.float32)
    out[flat] = 1.0
    return out.reshape(shape)
