"""Prepare DSEC (or its synthetic stand-in) for search, training, evaluation and a benchmark submission.

    python data_tools/prepare_dsec.py                                    # synthetic DSEC layout, generated if missing
    python data_tools/prepare_dsec.py --dsec-root ~/dsec --out data/prepared_dsec
    python data_tools/prepare_dsec.py --dsec-root ~/dsec --sequences zurich_city_11_a,thun_00_a,interlaken_00_g \\
        --val-sequences interlaken_00_g --eval-sequences thun_00_a

For every disparity map but the first, cuts the window (default 50 ms) ending at its timestamp from
each camera in that camera's own time base, rectifies the events with the camera's rectify_map
(rounded, off-sensor events dropped), reads the 16-bit PNG into disparity (0 = unknown) and marks the
pixels a left event hit in the window (the DSEC event-mask rule, named ``window``). The official test
sequences become the ``benchmark`` split (no ground truth), one example per row of their timestamp CSV,
carrying the file index a submission names its PNG by. The manifest records height, width, intrinsics,
f*B and the disparity range found; everything downstream reads them from it.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.errors import UserError, run_cli
from common.paths import DEFAULT_PREPARED_DSEC_DIR, DEFAULT_SYNTHETIC_DSEC_DIR
from data_tools.constants import DEFAULT_NUM_BINS, WINDOW_MS
from data_tools.dsec import HEIGHT_PX, NETWORK_MAX_DISPARITY_PX, WIDTH_PX, DsecSequence, read_disparity_png
from data_tools.dsec_files import SYNTHETIC_DSEC_KIND, find_dsec_sequence, list_sequences, timestamps_dirs
from data_tools.events import event_mask
from data_tools.mvsec import read_synthetic_manifest
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
from data_tools.splits import DSEC_EVAL_SEQUENCES, DSEC_VAL_SEQUENCES, dsec_roles

SPLIT_OF_ROLE = {"train": "train", "val": "val", "eval": "test", "benchmark": "benchmark"}


def names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsec-root", type=Path, default=None,
                        help=f"DSEC download (default: the synthetic DSEC-layout recording in {DEFAULT_SYNTHETIC_DSEC_DIR})")
    parser.add_argument("--sequences", default=None, help="comma-separated sequences to use (default: all found)")
    parser.add_argument("--val-sequences", default=None,
                        help=f"held-out validation sequences (default {','.join(DSEC_VAL_SEQUENCES)})")
    parser.add_argument("--eval-sequences", default=None,
                        help=f"held-out evaluation sequences, the 'test' split (default {','.join(DSEC_EVAL_SEQUENCES)})")
    parser.add_argument("--timestamps-dir", type=Path, default=None,
                        help="folder of the benchmark's <sequence>.csv files (default: ROOT/test_disparity_timestamps)")
    add_output_arguments(parser, DEFAULT_PREPARED_DSEC_DIR, "event window before each disparity map")
    return parser


def plan(root: Path, sequences: list[str] | None, val: list[str] | None, evaluate: list[str] | None,
         ) -> tuple[str, dict[str, str]]:
    """The source kind and the role of every sequence: train, val, eval (with ground truth) or benchmark."""
    synthetic = read_synthetic_manifest(root, SYNTHETIC_DSEC_KIND)
    train_found, test_found = list_sequences(root, "train"), list_sequences(root, "test")
    if not train_found:
        raise UserError(f"--dsec-root {root}: no DSEC training sequence found; searched {root / 'train'}/<sequence>/"
                        f"events/left/events.h5 and {root / 'train_events'}/<sequence>/events/left/events.h5")
    if sequences is not None:
        if unknown := [s for s in sequences if s not in train_found + test_found]:
            raise UserError(f"--sequences: {', '.join(unknown)} not found in {root} "
                            f"(has {', '.join(train_found + test_found)})")
        train_found = [s for s in train_found if s in sequences]
        test_found = [s for s in test_found if s in sequences]
    default_val = synthetic["split"]["val"] if synthetic else list(DSEC_VAL_SEQUENCES)
    default_eval = synthetic["split"]["eval"] if synthetic else list(DSEC_EVAL_SEQUENCES)
    roles = dsec_roles(train_found, val if val is not None else default_val,
                       evaluate if evaluate is not None else default_eval, str(root))
    roles.update({s: "benchmark" for s in test_found})
    return (SYNTHETIC_DSEC_KIND if synthetic else "dsec"), roles


def process(sequence: DsecSequence, window_us: int, out_file: Path, bar: tqdm) -> tuple[float, float]:
    """Cut, rectify and mask every example of one sequence; returns its valid disparities' (min, max)."""
    writer = SequenceWriter(out_file, sequence.sequence, sequence.t0_us * 1e-6, window_us, len(sequence.examples),
                            HEIGHT_PX, WIDTH_PX)
    try:
        for row, example in enumerate(sequence.examples):
            left = sequence.window("left", example.t_end_us, window_us)
            right = sequence.window("right", example.t_end_us, window_us)
            if example.disparity_png is None:
                disp = np.full((HEIGHT_PX, WIDTH_PX), np.nan, dtype=np.float32)
            else:
                disp = read_disparity_png(example.disparity_png)
            writer.add(row, example.t_end_us - sequence.t0_us, disp, event_mask(left, len(left), HEIGHT_PX, WIDTH_PX),
                       left, right, file_index=example.file_index)
            bar.update(1)
    except BaseException:
        writer.abort()  # the real error, not a second one from finishing a half-written file
        raise
    writer.close()
    return writer.disparity_range


def _note_missing_indices(opened: dict[str, DsecSequence]) -> None:
    """Say once which event files lack ms_to_idx or t_offset (they are read more slowly / from time 0)."""
    missing = sorted({name for seq in opened.values() for cam in seq.cameras.values() for name in cam.missing})
    if missing:
        files = sum(1 for seq in opened.values() for cam in seq.cameras.values() if cam.missing)
        print(f"note: {files} event file(s) have no {' and no '.join(missing)} (older DSEC exports): windows are "
              "located with a coarse time index" + (" and t_offset is taken as 0" if "t_offset" in missing else ""))


def prepare(dsec_root: Path | None = None, sequences: list[str] | None = None, out: Path = DEFAULT_PREPARED_DSEC_DIR,
            window_ms: int = WINDOW_MS, num_bins: int = DEFAULT_NUM_BINS, encoding: str = "binary",
            val: list[str] | None = None, evaluate: list[str] | None = None, timestamps_dir: Path | None = None,
            force: bool = False) -> dict:
    """Prepare a DSEC download; returns the manifest. See the module docstring."""
    check_output_options(window_ms, num_bins, encoding)
    if dsec_root is None:
        dsec_root = DEFAULT_SYNTHETIC_DSEC_DIR
        if read_synthetic_manifest(dsec_root, SYNTHETIC_DSEC_KIND) is None:
            from data_tools.synthetic_dsec import generate_dsec

            print(f"no recording given: generating the synthetic DSEC-layout one in {dsec_root}")
            generate_dsec(dsec_root)
    root = Path(dsec_root)
    if not root.is_dir():
        raise UserError(f"--dsec-root {root}: directory not found")
    if timestamps_dir is not None and not Path(timestamps_dir).is_dir():
        raise UserError(f"--timestamps-dir {timestamps_dir}: directory not found")
    kind, roles = plan(root, sequences, val, evaluate)
    files = {seq: find_dsec_sequence(root, seq, "test" if role == "benchmark" else "train", timestamps_dir)
             for seq, role in roles.items()}
    inputs = [p for f in files.values() for p in (*f.events.values(), *f.rectify_maps.values(), f.calibration,
                                                  f.timestamps, f.benchmark_csv) if p is not None]
    inputs += [png for f in files.values() if f.disparity_dir for png in sorted(f.disparity_dir.glob("*.png"))]
    source = {"kind": kind, "root": str(root.resolve()), "window_ms": window_ms, "roles": roles,
              "timestamps_dirs": [str(d) for d in timestamps_dirs(root, timestamps_dir)], "files": fingerprint(inputs)}
    out = Path(out)
    if (existing := reuse_if_up_to_date(out, source, num_bins, encoding, force)) is not None:
        return existing
    with contextlib.ExitStack() as stack:
        opened = {seq: stack.enter_context(DsecSequence(f)) for seq, f in files.items()}  # validates all first
        _note_missing_indices(opened)
        check_free_space(out, sum(s.num_events for s in opened.values()),
                         sum(len(s.examples) for s in opened.values()), HEIGHT_PX, WIDTH_PX)
        manifest = write_prepared(out, lambda tmp: _fill(tmp, source, roles, opened, window_ms, num_bins, encoding))
    report_range(manifest, NETWORK_MAX_DISPARITY_PX)
    return manifest


def _fill(tmp: Path, source: dict, roles: dict[str, str], opened: dict[str, DsecSequence], window_ms: int,
          num_bins: int, encoding: str) -> dict:
    """Write every sequence file into ``tmp``; returns the manifest."""
    entries, splits = {}, {split: [] for split in SPLIT_OF_ROLE.values()}
    ranges = []
    with tqdm(total=sum(len(s.examples) for s in opened.values()), desc="prepare", unit="example") as bar:
        for seq, role in roles.items():
            sequence = opened[seq]
            ranges.append(process(sequence, window_ms * 1000, tmp / f"{seq}.hdf5", bar))
            calibration = sequence.calibration.to_dict()
            entries[seq] = {"file": f"{seq}.hdf5", "num_examples": len(sequence.examples), "role": role,
                            "t0_us": sequence.t0_us, "t0_s": sequence.t0_us * 1e-6,
                            "file_index": [e.file_index for e in sequence.examples],
                            "intrinsics": {k: calibration[k] for k in ("f", "fy", "cx", "cy")},
                            "focal_baseline_px_m": calibration["focal_baseline_px_m"],
                            "baseline_m": calibration["baseline_m"]}
            splits[SPLIT_OF_ROLE[role]] += [[seq, row] for row in range(len(sequence.examples))]
    reference = entries[next(s for s, r in roles.items() if r == "train")]
    return {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "dataset": "dsec", "source": source,
        "num_bins": num_bins, "encoding": encoding, "window_ms": window_ms, "height": HEIGHT_PX, "width": WIDTH_PX,
        "focal_baseline_px_m": reference["focal_baseline_px_m"], "intrinsics": reference["intrinsics"],
        "baseline_m": reference["baseline_m"],
        **disparity_range_entries(ranges), "network_max_disparity_px": NETWORK_MAX_DISPARITY_PX, "event_mask_rule": "window",
        "sequences": entries, "splits": splits,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    manifest = prepare(args.dsec_root, names(args.sequences), args.out, args.window_ms, args.num_bins, args.encoding,
                       names(args.val_sequences), names(args.eval_sequences), args.timestamps_dir, args.force)
    counts = {name: len(rows) for name, rows in manifest["splits"].items()}
    print(f"prepared {args.out}: train {counts['train']}, val {counts['val']}, test {counts['test']}, "
          f"benchmark {counts['benchmark']} examples")
    return 0


if __name__ == "__main__":
    run_cli(main)
