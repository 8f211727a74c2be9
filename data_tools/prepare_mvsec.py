"""Prepare MVSEC (or the synthetic recording) for search, training and evaluation (SPEC §2).

    python data_tools/prepare_mvsec.py                                   # synthetic, generated if missing
    python data_tools/prepare_mvsec.py --mvsec-root ~/mvsec --split 1 --out data/prepared_split1

Reads the raw HDF5 files and rectification maps, cuts the 50 ms window before every kept
ground-truth depth frame, rectifies the events of both cameras, converts depth to disparity,
computes the event mask (last 15 000 left events) and writes compressed HDF5 plus a JSON
manifest. The number of time bins and the encoding are only defaults recorded in the manifest:
the Dataset voxelises on the fly, so changing them never rereads the raw recording.
Re-running on unchanged input is a no-op unless --force.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.errors import UserError, run_cli
from common.paths import DEFAULT_PREPARED_DIR, DEFAULT_SYNTHETIC_RAW_DIR
from data_tools.constants import (
    BASELINE_M,
    CX_PX,
    CY_PX,
    DEFAULT_NUM_BINS,
    EVENT_MASK_COUNT,
    FOCAL_BASELINE_PX_M,
    FOCAL_PX,
    NETWORK_MAX_DISPARITY_PX,
    SENSOR_HEIGHT_PX,
    SENSOR_WIDTH_PX,
    WINDOW_MS,
    depth_to_disparity,
)
from data_tools.events import event_mask, seconds_to_us
from data_tools.mvsec import check_family, find_sequence_files, read_synthetic_manifest
from data_tools.prepared import FORMAT_NAME, FORMAT_VERSION, SequenceWriter, disparity_range_entries
from data_tools.prepared_folder import (
    add_output_arguments,
    check_free_space,
    check_output_options,
    fingerprint,
    report_range,
    reuse_if_up_to_date,
    write_prepared,
)
from data_tools.recording import Recording
from data_tools.splits import (
    real_frames,
    real_num_val,
    real_split,
    shuffle_eval,
    split_eval,
    synthetic_frames,
    synthetic_num_val,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mvsec-root", type=Path, default=None,
                        help=f"folder with the MVSEC files (default: the synthetic recording in {DEFAULT_SYNTHETIC_RAW_DIR})")
    parser.add_argument("--split", type=int, default=None,
                        help="indoor_flying split 1, 2 or 3 (default 1; a synthetic recording uses its own)")
    parser.add_argument("--family", default="indoor_flying", help="sequence family of a real recording")
    add_output_arguments(parser, DEFAULT_PREPARED_DIR, "event window before each depth frame")
    return parser


def plan(root: Path, split: int | None, family: str) -> tuple[dict, list[tuple[str, str]]]:
    """Source description and the (sequence, role) pairs, role 'train' or 'eval', of the recording."""
    synthetic = read_synthetic_manifest(root) if root.is_dir() else None
    if synthetic is not None:
        s = synthetic["split"]
        jobs = [(seq, "train") for seq in s["train"]] + [(s["eval"], "eval")]
        return {"kind": "synthetic", "family": synthetic["family"], "split": None, "split_rule": s}, jobs
    check_family(f"{family}1", None)
    train, evaluate = real_split(1 if split is None else split)
    jobs = [(seq, "train") for seq in train] + [(evaluate, "eval")]
    return {"kind": "mvsec", "family": family, "split": 1 if split is None else split}, jobs


def process(recording: Recording, frames: list[int], window_us: int, out_file: Path, bar: tqdm) -> tuple[float, float]:
    """Cut, rectify and mask every kept frame of one sequence; returns its valid disparities' (min, max)."""
    f_b = FOCAL_BASELINE_PX_M.get(recording.files.family, FOCAL_BASELINE_PX_M["indoor_flying"])
    ends_us = seconds_to_us(recording.depth_ts_s[frames], recording.t0_s) if frames else np.zeros(0, np.int64)
    writer = SequenceWriter(out_file, recording.sequence, recording.t0_s, window_us, len(frames),
                            SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX)
    try:
        for frame, t_end in zip(frames, ends_us.tolist()):
            left = recording.cameras["left"].recent(t_end - window_us, t_end, EVENT_MASK_COUNT)
            mask = event_mask(left, EVENT_MASK_COUNT, SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX)
            first = int(np.searchsorted(left.t_us, t_end - window_us, side="right"))
            writer.add(frame, t_end, depth_to_disparity(recording.depth_m(frame), f_b), mask,
                       left.select(slice(first, None)), recording.cameras["right"].window(t_end - window_us, t_end))
            bar.update(1)
    except BaseException:
        writer.abort()  # the real error, not a second one from finishing a half-written file
        raise
    writer.close()
    return writer.disparity_range


def prepare(mvsec_root: Path | None = None, split: int | None = None, out: Path = DEFAULT_PREPARED_DIR,
            window_ms: int = WINDOW_MS, num_bins: int = DEFAULT_NUM_BINS, encoding: str = "binary",
            force: bool = False, family: str = "indoor_flying") -> dict:
    """Prepare a recording; returns the manifest. See the module docstring."""
    check_output_options(window_ms, num_bins, encoding)
    if split is not None and split not in (1, 2, 3):
        real_split(split)
    if mvsec_root is None:
        mvsec_root = DEFAULT_SYNTHETIC_RAW_DIR
        if read_synthetic_manifest(mvsec_root) is None:
            from data_tools.make_synthetic import generate

            print(f"no recording given: generating the synthetic one in {mvsec_root}")
            generate(mvsec_root)
    root = Path(mvsec_root)
    if not root.is_dir():
        raise UserError(f"--mvsec-root {root}: directory not found")
    source, jobs = plan(root, split, family)
    if source["kind"] == "synthetic" and split is not None:
        print(f"note: {root} is a synthetic recording; its manifest's split is used, --split {split} is ignored")
    files = {seq: find_sequence_files(root, seq) for seq, _ in jobs}
    source["root"] = str(root.resolve())
    source["window_ms"] = window_ms
    source["files"] = fingerprint([p for f in files.values() for p in (f.data, f.gt, *f.maps.values())])
    out = Path(out)
    if (existing := reuse_if_up_to_date(out, source, num_bins, encoding, force)) is not None:
        return existing
    with contextlib.ExitStack() as stack:
        recordings = {seq: stack.enter_context(Recording(f)) for seq, f in files.items()}  # validates all first
        frames = {seq: _frames(source, seq, role, recordings[seq]) for seq, role in jobs}
        check_free_space(out, sum(stream.size for rec in recordings.values() for stream in rec.streams.values()),
                         sum(len(f) for f in frames.values()), SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX)
        manifest = write_prepared(out, lambda tmp: _fill(tmp, source, jobs, recordings, frames, window_ms, num_bins,
                                                         encoding))
    report_range(manifest, NETWORK_MAX_DISPARITY_PX)
    return manifest


def _frames(source: dict, sequence: str, role: str, recording: Recording) -> list[int]:
    num_frames = recording.depth.shape[0]
    if source["kind"] == "synthetic":
        return synthetic_frames(num_frames, source["split_rule"]["drop_first_windows"])
    return real_frames(sequence, role, num_frames)


def _fill(tmp: Path, source: dict, jobs: list[tuple[str, str]], recordings: dict[str, Recording],
          frames: dict[str, list[int]], window_ms: int, num_bins: int, encoding: str) -> dict:
    """Write every sequence file into ``tmp``; returns the manifest."""
    sequences, splits, ranges = {}, {"train": [], "val": [], "test": []}, []
    total = sum(len(f) for f in frames.values())
    with tqdm(total=total, desc="prepare", unit="example") as bar:
        for seq, role in jobs:
            ranges.append(process(recordings[seq], frames[seq], window_ms * 1000, tmp / f"{seq}.hdf5", bar))
            count = len(frames[seq])
            sequences[seq] = {"file": f"{seq}.hdf5", "num_examples": count, "role": role,
                              "t0_s": recordings[seq].t0_s, "frame_index": frames[seq]}
            rows = [[seq, row] for row in range(count)]
            if role == "train":
                splits["train"] += rows
            else:
                shuffled = shuffle_eval(rows, 0)
                num_val = (synthetic_num_val(count, source["split_rule"]["val_fraction"])
                           if source["kind"] == "synthetic" else real_num_val(count))
                splits["val"], splits["test"] = split_eval(shuffled, num_val)
    return {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "dataset": "mvsec", "source": source,
        "num_bins": num_bins, "encoding": encoding, "window_ms": window_ms,
        "height": SENSOR_HEIGHT_PX, "width": SENSOR_WIDTH_PX,
        "focal_baseline_px_m": FOCAL_BASELINE_PX_M.get(source["family"], FOCAL_BASELINE_PX_M["indoor_flying"]),
        "intrinsics": {"f": FOCAL_PX, "cx": CX_PX, "cy": CY_PX}, "baseline_m": BASELINE_M,
        **disparity_range_entries(ranges), "event_mask_count": EVENT_MASK_COUNT,
        "event_mask_rule": "last_15000", "sequences": sequences, "splits": splits,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    manifest = prepare(args.mvsec_root, args.split, args.out, args.window_ms, args.num_bins, args.encoding,
                       args.force, args.family)
    counts = {name: len(rows) for name, rows in manifest["splits"].items()}
    print(f"prepared {args.out}: train {counts['train']}, val {counts['val']}, test {counts['test']} examples")
    return 0


if __name__ == "__main__":
    run_cli(main)
