"""DSEC read speed: preparing one sequence, in events per second and as a multiple of real time.

    python bench/bench_dsec_read.py [--dsec-root data/synthetic_dsec] [--rate-mev 5] [--seconds 3]

Two sequences side by side: the synthetic scene (about 1 M events/s per camera) and the same sequence
with its events replaced by uniformly random ones at ``--rate-mev`` million events per second per
camera, the order of DSEC's busy driving scenes. Each is cut into the 50 ms windows of its 10 Hz
disparity maps, rectified, masked and written exactly as prepare_dsec.py does (one process, one thread).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.paths import DEFAULT_SYNTHETIC_DSEC_DIR
from data_tools.dsec import HEIGHT_PX, WIDTH_PX, DsecSequence
from data_tools.dsec_files import SIDES, find_dsec_sequence
from data_tools.prepare_dsec import process
from data_tools.synthetic_dsec import generate_dsec, write_events

SEQUENCE = "zurich_city_synthetic_a"


def dense_copy(source: Path, out: Path, rate_mev: float, seed: int = 0) -> None:
    """``source``'s sequence with random events at ``rate_mev`` M/s per camera over the same time span."""
    shutil.copytree(source, out)
    rng = np.random.default_rng(seed)
    with DsecSequence(find_dsec_sequence(source.parent.parent, source.name, "train")) as sequence:
        offsets = {side: sequence.cameras[side].t_offset_us for side in SIDES}
        span_us = sequence.last_event_us - sequence.t0_us
    for side in SIDES:
        count = int(rate_mev * 1e6 * span_us * 1e-6)
        t = np.sort(rng.integers(0, span_us, count)).astype(np.uint32)
        columns = [(rng.integers(0, WIDTH_PX, count).astype(np.uint16), rng.integers(0, HEIGHT_PX, count).astype(np.uint16),
                    t, rng.integers(0, 2, count).astype(np.uint8))]
        write_events(out / "events" / side / "events.h5", columns, offsets[side])


def measure(root: Path, name: str, scratch: Path) -> dict[str, float]:
    files = find_dsec_sequence(root, name, "train")
    start = time.perf_counter()
    with DsecSequence(files) as sequence:
        events = sequence.num_events
        span_s = (sequence.last_event_us - sequence.t0_us) * 1e-6
        process(sequence, 50_000, scratch / f"{name}.hdf5", tqdm(disable=True))
    seconds = time.perf_counter() - start
    return {"events": events, "span_s": span_s, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsec-root", type=Path, default=DEFAULT_SYNTHETIC_DSEC_DIR)
    parser.add_argument("--rate-mev", type=float, default=5.0, help="random events per second per camera (millions)")
    args = parser.parse_args()
    if not (args.dsec_root / "manifest.json").is_file():
        generate_dsec(args.dsec_root)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        dense = scratch / "dense" / "train" / f"{SEQUENCE}_dense"
        dense_copy(args.dsec_root / "train" / SEQUENCE, dense, args.rate_mev)
        rows = {"synthetic scene": measure(args.dsec_root, SEQUENCE, scratch),
                f"random {args.rate_mev:g} M ev/s/camera": measure(scratch / "dense", dense.name, scratch)}
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; one 50 ms window per 100 ms (10 Hz maps)")
    print(f"{'sequence':<30} {'events':>11} {'span s':>7} {'prepare s':>9} {'M events/s':>10} {'x real time':>11}")
    for label, r in rows.items():
        print(f"{label:<30} {r['events']:>11,} {r['span_s']:>7.2f} {r['seconds']:>9.2f} "
              f"{r['events'] / r['seconds'] / 1e6:>10.2f} {r['span_s'] / r['seconds']:>11.2f}")


if __name__ == "__main__":
    main()
