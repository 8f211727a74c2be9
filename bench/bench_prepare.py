"""Preparing end to end: events per second and multiple of real time, on the synthetic recording.

    python bench/bench_prepare.py [--raw data/synthetic]

Generates the default synthetic recording first if it is missing (not timed), then times
``prepare`` (read, rectify, cut windows, event masks, disparity, compressed write) into a
temporary folder. Events counted: both cameras, the whole recording.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common.paths import DEFAULT_SYNTHETIC_RAW_DIR
from data_tools.make_synthetic import generate
from data_tools.prepare_mvsec import prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, default=DEFAULT_SYNTHETIC_RAW_DIR)
    args = parser.parse_args()
    if not (args.raw / "manifest.json").is_file():
        generate(args.raw)
    raw = json.loads((args.raw / "manifest.json").read_text())
    events = sum(sum(entry["num_events"].values()) for entry in raw["files"].values())
    seconds = raw["seconds"] * len(raw["sequences"])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        manifest = prepare(args.raw, out=Path(tmp) / "prepared", force=True)
        elapsed = time.perf_counter() - start
    examples = sum(len(v) for v in manifest["splits"].values())
    rate = events / seconds / 2
    print(f"{len(raw['sequences'])} sequences, {seconds:.1f} s of recording, {events} events "
          f"({rate / 1e3:.0f} k events/s per camera), {examples} examples")
    print(f"prepare: {elapsed:.2f} s -> {events / elapsed / 1e6:.2f} M events/s, {seconds / elapsed:.1f}x real time, "
          f"{examples / elapsed:.1f} examples/s")


if __name__ == "__main__":
    main()
