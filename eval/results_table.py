"""The README's results table from eval/disparity.py's metrics.json and eval/energy.py's energy.json.

    python eval/results_table.py [--metrics runs/eval/metrics.json] [--energy runs/energy/energy.json]
        [--mask dense|events] [--out runs/eval/results_table.md]

One markdown row per method (SNN, ANN twin, SGBM): MDE, 1PA, mean depth error, energy per inference,
all over the whole evaluated split. Energy is taken only from an energy.json of the same checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from common import paths
from common.atomic import atomic_path
from common.errors import UserError, run_cli
from common.reading import read_json


def _read(path: Path, option: str, producer: str) -> dict[str, Any]:
    return read_json(path, f"a file written by {producer}", option, missing=f"run {producer} first")


def energy_by_method(metrics: dict[str, Any], energy: dict[str, Any] | None) -> dict[str, float]:
    """mJ per inference of the evaluated checkpoints that energy.json measured (matched by file)."""
    if energy is None:
        return {}
    out = {}
    for method in ("snn", "ann"):
        measured = energy.get(method)
        evaluated = metrics.get("checkpoints", {}).get(method)
        if measured and evaluated and str(Path(measured["checkpoint"]).resolve()) == evaluated:
            out[method] = float(measured["total"]["energy_mj"])
    return out


def results_table(metrics: dict[str, Any], energy: dict[str, Any] | None, mask: str = "dense") -> str:
    energies = energy_by_method(metrics, energy)
    labels = metrics.get("labels", {})
    lines = [
        "| method | MDE (px) | 1PA (%) | mean depth error (cm) | energy (mJ / inference) |",
        "|---|---|---|---|---|",
    ]
    for method, by_mask in metrics["results"].items():
        if mask not in by_mask:
            raise UserError(f"--mask {mask}: metrics.json holds only {', '.join(by_mask)}")
        m = by_mask[mask]["all"]
        mj = f"{energies[method]:.3g}" if method in energies else "–"
        lines.append(f"| {labels.get(method, method)} | {m['mde_px']:.3f} | {m['1pa']:.1f} | "
                     f"{m['mean_depth_err_cm']:.1f} | {mj} |")
    images = next(iter(metrics["results"].values()))[mask]["all"]["images_used"]
    note = f"{metrics['split']} split, {images} images, {'dense' if mask == 'dense' else 'event-masked'} ground truth"
    if {"snn", "ann"} <= set(energies):
        note += f"; ANN twin / SNN energy = {energies['ann'] / energies['snn']:.1f}x"
    return "\n".join(lines) + f"\n\n({note})\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Markdown results table: SNN vs ANN twin vs SGBM.")
    parser.add_argument("--metrics", type=Path, default=paths.DEFAULT_EVAL_DIR / "metrics.json")
    parser.add_argument("--energy", type=Path, default=paths.DEFAULT_ENERGY_DIR / "energy.json")
    parser.add_argument("--mask", choices=("dense", "events"), default="dense")
    parser.add_argument("--out", type=Path, default=paths.DEFAULT_EVAL_DIR / "results_table.md")
    args = parser.parse_args(argv)
    metrics = _read(args.metrics, "--metrics", "eval/disparity.py")
    energy = _read(args.energy, "--energy", "eval/energy.py") if args.energy.is_file() else None
    try:
        table = results_table(metrics, energy, args.mask)
    except (KeyError, TypeError, AttributeError, IndexError, StopIteration, ValueError) as err:
        what = f"no entry {err}" if isinstance(err, KeyError) else "entries of the wrong type"
        raise UserError(f"--metrics {args.metrics} / --energy {args.energy}: valid JSON but not the layout "
                        f"eval/disparity.py and eval/energy.py write ({what})") from None
    print(table)
    with atomic_path(args.out) as tmp:
        tmp.write_text(table)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
