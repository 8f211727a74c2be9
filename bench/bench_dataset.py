"""Dataset throughput: examples per second of StereoEventDataset, full frames and training crops.

    python bench/bench_dataset.py [--prepared data/prepared] [--examples 60]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common.paths import DEFAULT_PREPARED_DIR
from data_tools.dataset import StereoEventDataset
from data_tools.prepare_mvsec import prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prepared", type=Path, default=DEFAULT_PREPARED_DIR)
    parser.add_argument("--examples", type=int, default=60)
    args = parser.parse_args()
    if not (args.prepared / "manifest.json").is_file():
        prepare(out=args.prepared)
    print(f"{'setting':34s} {'examples/s':>10s}")
    for label, kwargs in (("full frame, T=5, binary", {}),
                          ("full frame, T=5, count", {"encoding": "count"}),
                          ("full frame, T=10, binary", {"num_bins": 10}),
                          ("crop 192x288, T=5, binary", {"crop": (192, 288)})):
        ds = StereoEventDataset(args.prepared, "train", **kwargs)
        n = min(args.examples, len(ds))
        ds[0]  # open files
        start = time.perf_counter()
        for i in range(n):
            ds[i]
        print(f"{label:34s} {n / (time.perf_counter() - start):10.1f}")


if __name__ == "__main__":
    main()
