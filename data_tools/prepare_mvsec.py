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
import os
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.atomic import remove_stale_temporaries, temporary_name, write_json_atomic
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
    MAX_DISPARITY_IN_DATA_PX,
    SENSOR_HEIGHT_PX,
    SENSOR_WIDTH_PX,
    WINDOW_MS,
    depth_to_disparity,
)
from data_tools.events import event_mask, seconds_to_us
from data_tools.mvsec import check_family, find_sequence_files, read_synthetic_manifest
from data_tools.prepared import FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME, SequenceWriter, read_manifest
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
from data_tools.voxel import check_encoding


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mvsec-root", type=Path, default=None,
                        help=f"folder with the MVSEC files (default: the synthetic recording in {DEFAULT_SYNTHETIC_RAW_DIR})")
    parser.add_argument("--split", type=int, default=None,
                        help="indoor_flying split 1, 2 or 3 (default 1; a synthetic recording uses its own)")
    parser.add_argument("--family", default="indoor_flying", help="sequence family of a real recording")
    parser.add_argument("--out", type=Path, default=DEFAULT_PREPARED_DIR, help="prepared dataset folder")
    parser.add_argument("--window-ms", type=int, default=WINDOW_MS, help="event window before each depth frame")
    parser.add_argument("--num-bins", type=int, default=DEFAULT_NUM_BINS, help="default time bins T (manifest)")
    parser.add_argument("--encoding", default="binary", help="default encoding: binary, count or signed (manifest)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the output is up to date")
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


def fingerprint(paths: list[Path]) -> dict[str, list[int]]:
    return {str(p.resolve()): [p.stat().st_size, p.stat().st_mtime_ns] for p in paths}


def process(recording: Recording, frames: list[int], window_us: int, out_file: Path, bar: tqdm) -> int:
    """Cut, rectify and mask every kept frame of one sequence; returns the number of examples."""
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
    return len(frames)


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace ``out`` by the finished folder ``tmp`` with renames (readers never see a mix)."""
    old = temporary_name(out, ".old")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def prepare(mvsec_root: Path | None = None, split: int | None = None, out: Path = DEFAULT_PREPARED_DIR,
            window_ms: int = WINDOW_MS, num_bins: int = DEFAULT_NUM_BINS, encoding: str = "binary",
            force: bool = False, family: str = "indoor_flying") -> dict:
    """Prepare a recording; returns the manifest. See the module docstring."""
    check_encoding(encoding)
    if num_bins < 1:
        raise UserError(f"--num-bins {num_bins}: expected at least 1")
    if window_ms < 1:
        raise UserError(f"--window-ms {window_ms}: expected at least 1")
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
    existing = _existing_manifest(out)
    if existing is not None and existing["source"] == source and not force:
        if (existing["num_bins"], existing["encoding"]) != (num_bins, encoding):
            existing.update(num_bins=num_bins, encoding=encoding)
            write_json_atomic(out / MANIFEST_NAME, existing)
            print(f"{out}: up to date; default num_bins={num_bins}, encoding={encoding} recorded")
        else:
            print(f"{out}: up to date (use --force to rebuild)")
        return existing
    with contextlib.ExitStack() as stack:
        recordings = {seq: stack.enter_context(Recording(f)) for seq, f in files.items()}  # validates all first
        frames = {seq: _frames(source, seq, role, recordings[seq]) for seq, role in jobs}
        check_free_space(out, recordings, frames)
        return _build(out, source, jobs, recordings, frames, window_ms, num_bins, encoding)


# Prepared bytes per raw event and per ground-truth frame, measured on the synthetic recording (about
# 7 bytes an event with Blosc) with a margin: an HDF5 write that hits a full disk can crash the process,
# so the space is checked before anything is written.
BYTES_PER_EVENT = 10
BYTES_PER_FRAME = 2 * SENSOR_HEIGHT_PX * SENSOR_WIDTH_PX * 4


def check_free_space(out: Path, recordings: dict[str, Recording], frames: dict[str, list[int]]) -> None:
    """A UserError naming the folder when the prepared dataset would not fit on its disk."""
    events = sum(stream.size for rec in recordings.values() for stream in rec.streams.values())
    need = events * BYTES_PER_EVENT + sum(len(f) for f in frames.values()) * BYTES_PER_FRAME
    folder = next(p for p in (out, *out.parents) if p.exists())
    free = shutil.disk_usage(folder).free
    if free < need:
        raise UserError(f"disk full at {folder}: preparing needs about {need / 2**20:.0f} MiB, "
                        f"{free / 2**20:.0f} MiB are free")


def _existing_manifest(out: Path) -> dict | None:
    if not out.exists():
        return None
    if not (out / MANIFEST_NAME).is_file():
        if out.is_dir() and not any(out.iterdir()):
            return None
        raise UserError(f"--out {out}: exists and is not a prepared dataset (no {MANIFEST_NAME}); choose another folder")
    return read_manifest(out)


def _frames(source: dict, sequence: str, role: str, recording: Recording) -> list[int]:
    num_frames = recording.depth.shape[0]
    if source["kind"] == "synthetic":
        return synthetic_frames(num_frames, source["split_rule"]["drop_first_windows"])
    return real_frames(sequence, role, num_frames)


def _build(out: Path, source: dict, jobs: list[tuple[str, str]], recordings: dict[str, Recording],
           frames: dict[str, list[int]], window_ms: int, num_bins: int, encoding: str) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".tmp", ".old"):  # what a killed earlier run left
        remove_stale_temporaries(out.parent, out.name, suffix)
    tmp = temporary_name(out)
    tmp.mkdir()
    sequences, splits = {}, {"train": [], "val": [], "test": []}
    try:
        total = sum(len(f) for f in frames.values())
        with tqdm(total=total, desc="prepare", unit="example") as bar:
            for seq, role in jobs:
                count = process(recordings[seq], frames[seq], window_ms * 1000, tmp / f"{seq}.hdf5", bar)
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
        manifest = {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "source": source,
            "num_bins": num_bins, "encoding": encoding, "window_ms": window_ms,
            "height": SENSOR_HEIGHT_PX, "width": SENSOR_WIDTH_PX,
            "focal_baseline_px_m": FOCAL_BASELINE_PX_M.get(source["family"], FOCAL_BASELINE_PX_M["indoor_flying"]),
            "intrinsics": {"f": FOCAL_PX, "cx": CX_PX, "cy": CY_PX}, "baseline_m": BASELINE_M,
            "max_disparity_in_data_px": MAX_DISPARITY_IN_DATA_PX, "event_mask_count": EVENT_MASK_COUNT,
            "sequences": sequences, "splits": splits,
        }
        write_json_atomic(tmp / MANIFEST_NAME, manifest)
        _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    manifest = prepare(args.mvsec_root, args.split, args.out, args.window_ms, args.num_bins, args.encoding,
                       args.force, args.family)
    counts = {name: len(rows) for name, rows in manifest["splits"].items()}
    print(f"prepared {args.out}: train {counts['train']}, val {counts['val']}, test {counts['test']} examples")
    return 0


if __name__ == "__main__":
    run_cli(main)
