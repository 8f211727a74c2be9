"""Voxelisation speed: data_tools.voxel.voxelize against a plain np.add.at version, same events, one run.

    python bench/bench_voxelize.py [--events 2000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from data_tools.voxel import voxelize

H, W, T, WINDOW_US = 260, 346, 5, 50_000


def add_at_reference(x, y, t_us, p, encoding: str) -> np.ndarray:
    """The straightforward version: per-event bin by float division, accumulate with np.add.at."""
    channels = 1 if encoding == "signed" else 2
    out = np.zeros((T, channels, H, W), dtype=np.float32)
    bins = np.clip(np.ceil(t_us / WINDOW_US * T).astype(np.int64) - 1, 0, T - 1)
    if encoding == "signed":
        np.add.at(out, (bins, 0, y, x), np.where(p > 0, 1.0, -1.0))
        return np.sign(out)
    np.add.at(out, (bins, (p <= 0).astype(np.int64), y, x), 1.0)
    return (out > 0).astype(np.float32) if encoding == "binary" else out


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.events
    x = rng.integers(0, W, n).astype(np.uint16)
    y = rng.integers(0, H, n).astype(np.uint16)
    t_us = np.sort(rng.integers(1, WINDOW_US + 1, n)).astype(np.int64)
    p = rng.choice(np.array([-1, 1], np.int8), n)
    print(f"{n} events, T={T}, {W}x{H}, best of {args.repeats}")
    print(f"{'encoding':8s} {'voxelize Mev/s':>15s} {'np.add.at Mev/s':>16s} {'speed-up':>9s}")
    for encoding in ("binary", "count", "signed"):
        ours = best_time(lambda e=encoding: voxelize(x, y, t_us, p, 0, WINDOW_US, T, H, W, e), args.repeats)
        ref = best_time(lambda e=encoding: add_at_reference(x.astype(np.int64), y.astype(np.int64), t_us, p, e), 2)
        got = voxelize(x, y, t_us, p, 0, WINDOW_US, T, H, W, encoding)
        assert np.array_equal(got, add_at_reference(x.astype(np.int64), y.astype(np.int64), t_us, p, encoding))
        print(f"{encoding:8s} {n / ours / 1e6:15.1f} {n / ref / 1e6:16.1f} {ref / ours:8.1f}x")


if __name__ == "__main__":
    main()
