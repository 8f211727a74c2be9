"""Uniform averages of a run's last epochs against its best.pt: validation MDE per window, and the test
MDE of best.pt and of the window chosen on validation (the test split is scored once per network).

Needs a run trained with ``--set train.keep_epoch_checkpoints=N`` (its epochs/epoch_NNN.pt). For each
window K, the last K kept epochs are averaged (stereo/average_checkpoints.py) and scored on all
validation frames (eval/disparity.py --split val); the K with the lowest validation MDE is then scored
on test beside best.pt. Writes RUN/average_windows.csv and prints the table.

    python bench/checkpoint_average_windows.py runs/bench_learning/NAME/snn_seed2 --windows 1 3 6 9 12 21
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

from common.paths import BEST_CHECKPOINT_NAME, EPOCH_CHECKPOINT_DIR
from stereo.checkpoint import kept_epoch_checkpoints

REPOSITORY = Path(__file__).resolve().parent.parent


def quiet(command: list[str]) -> None:
    """Run a project CLI without its progress bars; on failure show its error and stop."""
    done = subprocess.run([sys.executable, *command], capture_output=True, text=True)
    if done.returncode:
        last_line = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        sys.exit(f"{Path(command[0]).name}: {last_line}")


def evaluate(checkpoint: Path, split: str, out: Path) -> dict[str, float]:
    """eval/disparity.py on one checkpoint and split: dense MDE and 1PA over all images."""
    quiet([str(REPOSITORY / "eval" / "disparity.py"), "--checkpoint", str(checkpoint), "--split", split,
           "--mask", "dense", "--baselines", "", "--out", str(out)])
    result = json.loads((out / "metrics.json").read_text())["results"]
    scores = next(iter(result.values()))["dense"]["all"]
    return {"mde_px": scores["mde_px"], "1pa": scores["1pa"]}


def average(epochs: list[Path], out: Path) -> Path:
    quiet([str(REPOSITORY / "stereo" / "average_checkpoints.py"), *map(str, epochs), "--out", str(out)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a training run folder with epochs/epoch_NNN.pt")
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 3, 6, 9, 12])
    args = parser.parse_args()
    kept = kept_epoch_checkpoints(args.run / EPOCH_CHECKPOINT_DIR)
    if not kept:
        sys.exit(f"error: {args.run / EPOCH_CHECKPOINT_DIR}: no epoch checkpoints "
                 "(train with --set train.keep_epoch_checkpoints=N)")
    work = args.run / "average_windows"
    rows = []
    for window in sorted(set(w for w in args.windows if 0 < w <= len(kept))):
        epochs = list(kept)[-window:]
        averaged = average([kept[epoch] for epoch in epochs], work / f"last{window}.pt")
        rows.append({"checkpoint": f"average of the last {window}", "window": window,
                     "epochs": f"{epochs[0]:03d}-{epochs[-1]:03d}", "split": "val",
                     **evaluate(averaged, "val", work / f"last{window}_val")})
    best = args.run / BEST_CHECKPOINT_NAME
    rows.append({"checkpoint": "best.pt", "window": 0, "epochs": "", "split": "val",
                 **evaluate(best, "val", work / "best_val")})
    chosen = min((r for r in rows if r["window"]), key=lambda r: r["mde_px"])
    rows.append({**chosen, "split": "test", **evaluate(work / f"last{chosen['window']}.pt", "test",
                                                        work / f"last{chosen['window']}_test")})
    rows.append({"checkpoint": "best.pt", "window": 0, "epochs": "", "split": "test",
                 **evaluate(best, "test", work / "best_test")})
    with open(args.run / "average_windows.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{'checkpoint':28s}{'epochs':>10s}{'split':>6s}{'MDE px':>9s}{'1PA %':>8s}")
    for row in rows:
        print(f"{row['checkpoint']:28s}{row['epochs']:>10s}{row['split']:>6s}{row['mde_px']:9.3f}{row['1pa']:8.1f}")
    print(f"wrote {args.run / 'average_windows.csv'}")


if __name__ == "__main__":
    main()
