"""Spike tensors from events (SPEC §3), vectorised: one flat index per event, no Python loop.

Bins follow the example window of SPEC §2, which is half-open on the left: the window is
(t_start, t_end] and bin k covers (t_start + k*dt, t_start + (k+1)*dt] with dt = (t_end - t_start)/T.
An event exactly on t_end lands in the last bin; one exactly on t_start belongs to the previous window.
Channel 0 holds positive events, channel 1 negative ones (``signed`` has one channel).
"""

from __future__ import annotations

import numpy as np

from data_tools.errors import UserError

ENCODING_CHANNELS = {"binary": 2, "count": 2, "signed": 1}


def check_encoding(encoding: str) -> None:
    """Raise a UserError naming the encoding option when it is unknown."""
    if encoding not in ENCODING_CHANNELS:
        raise UserError(f"encoding '{encoding}': expected one of {', '.join(ENCODING_CHANNELS)}")


def bin_indices(t_us: np.ndarray, t_start_us: int, t_end_us: int, num_bins: int) -> np.ndarray:
    """Bin of each event in (t_start, t_end]; -1 outside. Exact integer arithmetic on microseconds."""
    rel = np.asarray(t_us, dtype=np.int64) - np.int64(t_start_us)
    duration = np.int64(t_end_us) - np.int64(t_start_us)
    bins = (rel * num_bins - 1) // duration  # == ceil(rel * T / duration) - 1 for rel > 0
    bins[(rel <= 0) | (rel > duration)] = -1
    return bins


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
    channels = ENCODING_CHANNELS[encoding]
    size = num_bins * channels * height * width
    bins = bin_indices(t_us, t_start_us, t_end_us, num_bins)
    x = np.asarray(x, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p)
    keep = (bins >= 0) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
    if not keep.all():
        bins, x, y, p = bins[keep], x[keep], y[keep], p[keep]
    pixel = y * width + x
    if encoding == "signed":
        flat = bins * (height * width) + pixel
        summed = np.bincount(flat, weights=np.where(p > 0, 1.0, -1.0), minlength=size)
        return np.sign(summed).astype(np.float32).reshape(num_bins, 1, height, width)
    channel = (p <= 0).astype(np.int64)
    flat = (bins * 2 + channel) * (height * width) + pixel
    if encoding == "count":
        return np.bincount(flat, minlength=size).astype(np.float32).reshape(num_bins, 2, height, width)
    out = np.zeros(size, dtype=np.float32)
    out[flat] = 1.0
    return out.reshape(num_bins, 2, height, width)
