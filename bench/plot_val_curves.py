"""Validation MDE against step for several ``stereo/train.py`` runs, on one picture with its CSV.

For the science loop's one-change-at-a-time comparisons that ``bench/bench_learning.py`` does not run
itself (fine-tunes started with ``--init``, for example): each run folder's ``curve.csv`` (or, when
the run validated at epoch ends only, its ``metrics.csv``) becomes one line. ``--step-offset`` shifts
a fine-tune's steps by those of the run it started from, so both sit on one axis.

    python bench/plot_val_curves.py runs/aug_ab/none runs/aug_ab/vflip_polarity \\
        --labels "no augmentation" "vflip + polarity" --out docs/learning/finetune_variants
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from common.errors import UserError, run_cli
from common.paths import CURVE_CSV_NAME
from stereo.loop import read_csv_rows

STEPS_PER_EPOCH_DEFAULT = 80  # 160 training examples of the synthetic recording, batch 2


def run_curve(run: Path, steps_per_epoch: int) -> list[tuple[int, float]]:
    """(optimiser step, validation MDE) of one run folder."""
    curve, metrics = run / CURVE_CSV_NAME, run / "metrics.csv"
    if curve.is_file():
        return [(int(float(r["step"])), float(r["val_mde_px"])) for r in read_csv_rows(curve)]
    if metrics.is_file():
        return [(int(r["epoch"]) * steps_per_epoch, float(r["val_mde_px"])) for r in read_csv_rows(metrics)]
    raise UserError(f"{run}: no {CURVE_CSV_NAME} or metrics.csv (expected a stereo/train.py run folder)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="run folders of stereo/train.py")
    parser.add_argument("--labels", nargs="+", help="one label per run (default: the folder names)")
    parser.add_argument("--step-offset", type=int, default=0, help="added to every step (a fine-tune's start)")
    parser.add_argument("--steps-per-epoch", type=int, default=STEPS_PER_EPOCH_DEFAULT,
                        help="for runs that only have metrics.csv")
    parser.add_argument("--from-step", type=int, default=0,
                        help="only points at or after this step (after the offset): zoom on a run's last phase")
    parser.add_argument("--title", default="validation MDE")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.csv and OUT.png")
    args = parser.parse_args(argv)
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        raise UserError(f"--labels: {len(labels)} labels for {len(args.runs)} runs")
    curves = {label: [(step + args.step_offset, mde) for step, mde in run_curve(run, args.steps_per_epoch)
                      if step + args.step_offset >= args.from_step]
              for label, run in zip(labels, args.runs)}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "step", "val_mde_px"])
        for label, rows in curves.items():
            writer.writerows([label, step, round(mde, 4)] for step, mde in rows)
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=80)
    for label, rows in curves.items():
        ax.plot([s for s, _ in rows], [m for _, m in rows], marker=".", label=label)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("validation MDE (px)")
    ax.set_title(args.title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"))
    plt.close(fig)
    print(f"wrote {args.out.with_suffix('.csv')} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    run_cli(main)
