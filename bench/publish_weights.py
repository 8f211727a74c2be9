"""Publish a benchmark run's checkpoints as the pretrained weights in ``weights/`` (model card data).

Copies each run's ``best.pt`` to ``weights/<name>.pt`` (checked loadable with ``weights_only`` and under
the size limit) and writes ``weights/weights.json``: the fingerprint of the raw recording they were
trained on (data_tools/fingerprint.py), the test metrics of each checkpoint beside SGBM's from
eval/disparity.py's metrics.json, the training steps and seconds (from each run's last.pt and
curve.csv), the git commit and the date. ``tests/test_weights.py`` reads that file; the prose of the
model card (weights/README.md) is written by hand from it.

    python bench/publish_weights.py --snn-run runs/bench_learning/synthetic_bench/snn_seed0 \
        --ann-run runs/bench_learning/synthetic_bench/ann_seed0 --metrics runs/synthetic_bench_eval/metrics.json
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import subprocess
from pathlib import Path
from typing import Any

from common.atomic import atomic_path, write_json_atomic
from common.errors import UserError, run_cli
from common.paths import BEST_CHECKPOINT_NAME, CURVE_CSV_NAME, DEFAULT_SYNTHETIC_RAW_DIR, LAST_CHECKPOINT_NAME
from common.reading import read_json
from data_tools.fingerprint import recording_fingerprint
from data_tools.mvsec import read_synthetic_manifest
from stereo.checkpoint import load_checkpoint, load_model_from_checkpoint
from stereo.loop import read_csv_rows

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = ROOT / "weights"
CARD_DATA = "weights.json"
MAX_BYTES = 5 * 2**20
REPORTED = ("mde_px", "1pa", "2pa", "3pa", "rmse_px", "mean_depth_err_cm", "median_depth_err_cm")


def _git_commit() -> str:
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def _scores(metrics: dict[str, Any], method: str) -> dict[str, dict[str, float]]:
    try:
        by_mask = metrics["results"][method]
    except KeyError:
        raise UserError(f"--metrics: no results for '{method}' (evaluate with --baselines sgbm,ann)") from None
    return {mask: {k: round(float(by_mask[mask]["all"][k]), 4) for k in REPORTED} for mask in by_mask}


def publish(name: str, run: Path, metrics: dict[str, Any], method: str) -> dict[str, Any]:
    source = run / BEST_CHECKPOINT_NAME
    if source.stat().st_size > MAX_BYTES:
        raise UserError(f"{source}: {source.stat().st_size / 2**20:.1f} MiB, over the {MAX_BYTES / 2**20:.0f} MiB limit")
    _, ckpt = load_model_from_checkpoint(source, "cpu")
    if bool(ckpt["ann"]) != (method == "ann"):
        raise UserError(f"{source}: expected {'an ANN twin' if method == 'ann' else 'an SNN'} checkpoint")
    if metrics["checkpoints"].get(method) != str(source.resolve()):
        raise UserError(f"--metrics: its '{method}' result is of {metrics['checkpoints'].get(method)}, not {source}")
    last = load_checkpoint(run / LAST_CHECKPOINT_NAME)
    curve = read_csv_rows(run / CURVE_CSV_NAME)
    target = WEIGHTS_DIR / f"{name}.pt"
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return {"file": target.name, "ann": bool(ckpt["ann"]), "epoch": int(ckpt["epoch"]),
            "best_val_mde_px": round(float(ckpt["best_val_mde_px"]), 4),
            "train_steps": int(curve[-1]["step"]) if curve else None,
            "train_time_s": round(float(last.get("train_time_s", 0.0)), 1),
            "config": ckpt["config"], "test": _scores(metrics, method)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snn-run", type=Path, required=True, help="run folder of the SNN (best.pt, last.pt, curve.csv)")
    parser.add_argument("--ann-run", type=Path, required=True, help="run folder of the ANN twin")
    parser.add_argument("--metrics", type=Path, required=True, help="eval/disparity.py's metrics.json of both, with SGBM")
    parser.add_argument("--raw", type=Path, default=DEFAULT_SYNTHETIC_RAW_DIR, help="the raw recording trained on")
    parser.add_argument("--name", default="synthetic_bench", help="weights/<kind>_<name>.pt")
    parser.add_argument("--machine", default="2-core x86-64 CPU, 24 GiB, torch 2.13.0 CPU build, one thread per run")
    args = parser.parse_args(argv)
    metrics = read_json(args.metrics, "a metrics.json of eval/disparity.py", "--metrics")
    manifest = read_synthetic_manifest(args.raw)
    if manifest is None:
        raise UserError(f"--raw {args.raw}: not a synthetic recording (no manifest.json of data_tools/make_synthetic.py)")
    WEIGHTS_DIR.mkdir(exist_ok=True)
    card = {
        "recording": {"folder": str(args.raw), "generator": "data_tools/make_synthetic.py (defaults)",
                      "sequences": manifest["sequences"],
                      "fingerprint_sha256": recording_fingerprint(args.raw, manifest["sequences"])},
        "test_split": {"examples": metrics["examples"], "masks": metrics["masks"]},
        "sgbm": {"params": metrics.get("sgbm", {}).get("params"), "tuned_on": metrics.get("sgbm", {}).get("tuned_on"),
                 "test": _scores(metrics, "sgbm")},
        "checkpoints": {
            f"snn_{args.name}": publish(f"snn_{args.name}", args.snn_run, metrics, "snn"),
            f"ann_{args.name}": publish(f"ann_{args.name}", args.ann_run, metrics, "ann"),
        },
        "commit": _git_commit(), "date": datetime.date.today().isoformat(), "machine": args.machine,
    }
    write_json_atomic(WEIGHTS_DIR / CARD_DATA, card)
    for name, entry in card["checkpoints"].items():
        print(f"{name}: test MDE {entry['test']['dense']['mde_px']} px (SGBM {card['sgbm']['test']['dense']['mde_px']}), "
              f"{entry['train_steps']} steps, {entry['train_time_s']:.0f} s -> {WEIGHTS_DIR / entry['file']}")
    print(f"wrote {WEIGHTS_DIR / CARD_DATA}")
    return 0


if __name__ == "__main__":
    run_cli(main)
