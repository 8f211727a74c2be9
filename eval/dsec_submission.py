"""Write (and check) a DSEC disparity-benchmark submission from a checkpoint and a prepared benchmark split.

    python eval/dsec_submission.py [--checkpoint runs/train_dsec/best.pt] [--data data/prepared_dsec]
        [--out runs/dsec_submission]
    python eval/dsec_submission.py --check runs/dsec_submission --timestamps-dir ~/dsec/test_disparity_timestamps

A submission is one folder per test sequence holding one 16-bit PNG per row of the sequence's timestamp
CSV, named ``{file_index:06d}.png``, value = disparity x 256 (>= 0), 480 x 640; DSEC's server sorts the files
by name. The check verifies what DSEC's own checker (uzh-rpg/DSEC, check_disparity_submission.py) does:
folder names, file counts, shape, 16-bit depth and non-negative values, plus the exact file names.
The folder is written under a temporary name and renamed when complete and checked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from common import paths
from common.atomic import atomic_output
from common.errors import UserError, run_cli
from data_tools.dsec import DISPARITY_SCALE, HEIGHT_PX, WIDTH_PX, read_integer_rows
from data_tools.prepared import read_manifest
from eval.evaluate import network_predictor
from stereo.config import add_config_arguments, start_cli

SWISS_PREFIXES = ("thun_", "interlaken_", "zurich_city_")  # DSEC's checker accepts only these sequence names
BENCHMARK_SPLIT = "benchmark"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Write or check a DSEC disparity benchmark submission.")
    parser.add_argument("--checkpoint", type=Path, default=paths.DEFAULT_TRAIN_DSEC_DIR / paths.BEST_CHECKPOINT_NAME)
    parser.add_argument("--data", type=Path, default=paths.DEFAULT_PREPARED_DSEC_DIR,
                        help="prepared DSEC folder with a benchmark split (data_tools/prepare_dsec.py)")
    parser.add_argument("--out", type=Path, default=paths.DEFAULT_DSEC_SUBMISSION_DIR, help="submission folder")
    parser.add_argument("--check", type=Path, default=None, help="only check this submission folder")
    parser.add_argument("--timestamps-dir", type=Path, default=None,
                        help="with --check: DSEC's folder of <sequence>.csv (default: the file indices in --data)")
    add_config_arguments(parser)
    return parser.parse_args(argv)


def expected_from_manifest(data: Path) -> dict[str, list[int]]:
    """Sequence -> the file indices its benchmark examples must be written as."""
    manifest = read_manifest(data)
    expected = {seq: list(entry["file_index"]) for seq, entry in manifest["sequences"].items()
                if entry["role"] == BENCHMARK_SPLIT}
    if not expected:
        raise UserError(f"--data {data}: has no benchmark sequences (prepare a DSEC download with its test sequences)")
    return expected


def expected_from_csvs(folder: Path) -> dict[str, list[int]]:
    """Sequence -> file indices from DSEC's ``test_disparity_timestamps`` CSVs."""
    if not folder.is_dir():
        raise UserError(f"--timestamps-dir {folder}: directory not found")
    csvs = sorted(folder.glob("*.csv"))
    if not csvs:
        raise UserError(f"--timestamps-dir {folder}: no <sequence>.csv files")
    return {p.stem: read_integer_rows(p, 2, "timestamp_us, file_index")[:, 1].tolist() for p in csvs}


def disparity_png(disp_px: np.ndarray) -> np.ndarray:
    """Disparity -> DSEC's 16-bit PNG values: x 256, rounded, clipped to 0 .. 65535 (NaN -> 0)."""
    scaled = np.rint(np.nan_to_num(disp_px, nan=0.0, posinf=0.0, neginf=0.0) * DISPARITY_SCALE)
    return np.clip(scaled, 0, np.iinfo(np.uint16).max).astype(np.uint16)


def check_submission(folder: Path, expected: dict[str, list[int]]) -> int:
    """Every check DSEC's checker makes, as one UserError line naming the offending path; returns the PNG count."""
    if not folder.is_dir():
        raise UserError(f"{folder}: submission folder not found")
    present = {p.name for p in folder.iterdir()}
    if present != set(expected):
        raise UserError(f"{folder}: holds {sorted(present)}, expected exactly the folders {sorted(expected)}")
    total = 0
    for seq, indices in sorted(expected.items()):
        if not seq.startswith(SWISS_PREFIXES) or not (folder / seq).is_dir():
            raise UserError(f"{folder / seq}: expected a folder named like a DSEC sequence ({', '.join(SWISS_PREFIXES)}...)")
        names = sorted(p.name for p in (folder / seq).iterdir())
        want = sorted(f"{i:06d}.png" for i in indices)
        if names != want:
            missing, extra = sorted(set(want) - set(names)), sorted(set(names) - set(want))
            raise UserError(f"{folder / seq}: {len(names)} files, expected {len(want)} "
                            f"(missing {missing[:3]}, unexpected {extra[:3]})")
        for name in names:
            image = cv2.imread(str(folder / seq / name), cv2.IMREAD_UNCHANGED)
            if image is None or image.dtype != np.uint16 or image.shape != (HEIGHT_PX, WIDTH_PX):
                got = "unreadable" if image is None else f"{image.dtype} {image.shape}"
                raise UserError(f"{folder / seq / name}: {got}, expected a 16-bit {HEIGHT_PX} x {WIDTH_PX} PNG")
            if image.astype(np.float32).min() / DISPARITY_SCALE < 0:
                raise UserError(f"{folder / seq / name}: negative disparity")
        total += len(names)
    return total


def write_submission(args: argparse.Namespace) -> int:
    cfg, device = start_cli(args)
    expected = expected_from_manifest(args.data)
    run, _, dataset = network_predictor(args.checkpoint, device, args.data, BENCHMARK_SPLIT, 0, "--checkpoint")
    if (dataset.height, dataset.width) != (HEIGHT_PX, WIDTH_PX):
        raise UserError(f"--data {args.data}: {dataset.height} x {dataset.width} frames; a DSEC submission needs "
                        f"{HEIGHT_PX} x {WIDTH_PX}")
    out = Path(args.out)
    with atomic_output(out, folder=True) as tmp:
        for seq in expected:
            (tmp / seq).mkdir()
        for index in tqdm(range(len(dataset)), desc="submission", unit="map"):
            item = dataset[index]
            name = tmp / item["sequence"] / f"{item['file_index']:06d}.png"
            if not cv2.imwrite(str(name), disparity_png(run(index, item))):
                raise UserError(f"{name}: could not be written")
        count = check_submission(tmp, expected)
    print(f"wrote {count} disparity maps for {len(expected)} sequence(s) to {out}; the structure checks pass "
          "(zip the sequence folders for DSEC's server)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check is None:
        return write_submission(args)
    expected = expected_from_csvs(args.timestamps_dir) if args.timestamps_dir else expected_from_manifest(args.data)
    count = check_submission(args.check, expected)
    print(f"{args.check}: {count} disparity maps in {len(expected)} sequence(s); the structure checks pass")
    return 0


if __name__ == "__main__":
    run_cli(main)
