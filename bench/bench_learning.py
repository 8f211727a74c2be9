"""Learning curves of the SNN and its ANN twin: validation MDE against step and training time.

The science loop of issue "the networks learn": a small config (configs/learning_small.yaml, under a
second per SNN step on 2 cores) trains both networks with ``stereo/train.py`` for a few hundred steps,
validating on every validation frame every ``train.val_every_steps`` steps, for several seeds. The
constant-prediction line is the MDE of predicting the median training disparity everywhere: a network
on that line has learned nothing. Runs go two at a time, one thread each (a side-by-side comparison:
both suffer any load alike).

    python bench/bench_learning.py          # shallow-path SNN and twin, seeds 0 1 2 -> docs/learning/learning_small.*
    python bench/bench_learning.py --arch configs/arch/spikedhs_mvsec.json --filter-multiplier 4 --name learning_deep_fm4
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common.paths import DEFAULT_PREPARED_DIR

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "learning_small.yaml"
SHALLOW_ARCHITECTURE = ROOT / "configs" / "arch" / "spikedhs_shallow_fm4.json"


def constant_prediction_mde(prepared: Path) -> tuple[float, float]:
    """(median training disparity, the validation MDE of predicting it everywhere)."""
    from data_tools.dataset import StereoEventDataset
    from eval.evaluate import median_training_disparity

    median = median_training_disparity(prepared)
    val = StereoEventDataset(prepared, "val")
    errors = [float(np.abs(val[i]["disp_px"][val[i]["valid"]].numpy() - median).mean()) for i in range(len(val))]
    return median, float(np.mean(errors))


def resized_architecture(source: Path, filter_multiplier: int, out: Path) -> Path:
    """A copy of the architecture file in the run folder, at another filter multiplier if one is given."""
    payload = json.loads(source.read_text())
    if filter_multiplier:
        for net in ("feature", "matching"):
            payload[net]["filter_multiplier"] = filter_multiplier
        payload["source"] = f"{payload.get('source', '')} (filter multiplier {filter_multiplier} for bench_learning)"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    return out


def run_one(kind: str, seed: int, args: argparse.Namespace, arch: Path) -> Path:
    out = args.runs / args.name / f"{kind}_seed{seed}"
    if (out / "curve.csv").is_file() and not args.force:
        return out
    command = [sys.executable, str(ROOT / "stereo" / "train.py"), "--arch", str(arch), "--config", str(args.config),
               "--data", str(args.data), "--out", str(out), "--seed", str(seed), "--device", args.device,
               "--set", f"train.epochs={args.epochs}", *[f"--set={o}" for o in args.set]]
    if kind == "ann":
        command.append("--ann")
    else:
        command += [f"--set={o}" for o in args.snn_set]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    with open(out.parent / f"{kind}_seed{seed}.log", "w") as log:
        subprocess.run(command, check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
    return out


def read_curve(path: Path) -> list[dict[str, float]]:
    with path.open(newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def plot(curves: dict[tuple[str, int], list[dict[str, float]]], constant_mde: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=80)
    colours = {"snn": "tab:red", "ann": "tab:blue"}
    for (kind, seed), rows in sorted(curves.items()):
        label = f"{'SNN' if kind == 'snn' else 'ANN twin'}" if seed == min(s for k, s in curves if k == kind) else None
        for ax, key in zip(axes, ("step", "train_time_s")):
            ax.plot([r[key] for r in rows], [r["val_mde_px"] for r in rows], color=colours[kind], alpha=0.8,
                    marker=".", label=label)
    for ax, xlabel in zip(axes, ("optimiser step", "training time (s, 1 thread each)")):
        ax.axhline(constant_mde, color="grey", linestyle="--", label="constant prediction")
        ax.axhline(0.8 * constant_mde, color="grey", linestyle=":", label="0.8 x constant")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation MDE (px)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def first_step_below(rows: list[dict[str, float]], level: float) -> float | None:
    return next((r["step"] for r in rows if r["val_mde_px"] < level), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=Path, default=SHALLOW_ARCHITECTURE)
    parser.add_argument("--filter-multiplier", type=int, default=0, help="0: as in the architecture file")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--data", type=Path, default=DEFAULT_PREPARED_DIR)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of 80 steps (160 examples, batch 2)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="+", default=["snn", "ann"])
    parser.add_argument("--set", action="append", default=[], help="config override for both networks")
    parser.add_argument("--snn-set", action="append", default=[],
                        help="config override for the SNN only (the benchmark's T = 2: data.num_bins=2)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=Path, default=Path("runs/bench_learning"))
    parser.add_argument("--name", default="learning_small")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "learning")
    parser.add_argument("--force", action="store_true", help="retrain runs that already have a curve")
    args = parser.parse_args()
    arch = resized_architecture(args.arch, args.filter_multiplier, args.runs / args.name / "architecture.json")
    median, constant_mde = constant_prediction_mde(args.data)
    jobs = [(kind, seed) for seed in args.seeds for kind in args.kinds]
    with ThreadPoolExecutor(args.jobs) as pool:
        outs = dict(zip(jobs, pool.map(lambda job: run_one(job[0], job[1], args, arch), jobs)))
    curves = {job: read_curve(out / "curve.csv") for job, out in outs.items()}
    args.docs.mkdir(parents=True, exist_ok=True)
    with (args.docs / f"{args.name}.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["network", "seed", "step", "train_time_s", "train_loss", "val_mde_px", "val_1pa",
                         "constant_mde_px"])
        for (kind, seed), rows in sorted(curves.items()):
            for r in rows:
                writer.writerow([kind, seed, int(r["step"]), r["train_time_s"], round(r["train_loss"], 4),
                                 round(r["val_mde_px"], 4), round(r["val_1pa"], 2), round(constant_mde, 4)])
    fm = json.loads(arch.read_text())["feature"]["filter_multiplier"]
    title = (f"{args.name}: {args.arch.name} at filter multiplier {fm}; constant prediction "
             f"{median:.2f} px scores {constant_mde:.2f} px")
    plot(curves, constant_mde, args.docs / f"{args.name}.png", title)
    print(title)
    for (kind, seed), rows in sorted(curves.items()):
        below = first_step_below(rows, 0.8 * constant_mde)
        print(f"{kind} seed {seed}: below 0.8 x constant at step {below}, last val MDE {rows[-1]['val_mde_px']:.3f} px "
              f"at step {int(rows[-1]['step'])}, {rows[-1]['train_time_s']:.0f} s of training")
    print(f"wrote {args.docs / (args.name + '.csv')} and {args.docs / (args.name + '.png')}")


if __name__ == "__main__":
    main()
