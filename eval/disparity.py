"""Evaluate disparity and depth error of a checkpoint (and baselines) by the published protocol (SPEC §8).

    python eval/disparity.py [--checkpoint runs/train/best.pt] [--data data/prepared] [--split test]
        [--mask both] [--include-empty] [--baselines sgbm,ann,constant --ann-checkpoint runs/train_ann/best.pt]
        [--viz [--viz-indices 0,5,9|all]] [--out runs/eval]

Writes metrics.json and metrics.csv (method, mask, sequence -> MDE, 1/2/3PA, RMSE, depth errors,
images used), with --viz panels/<index>_<sequence>_<frame>.png and summary.png.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

import numpy as np

from common import paths
from common.atomic import atomic_path, write_json_atomic
from common.errors import UserError, run_cli
from common.metrics import METRIC_KEYS, POOLED_KEYS
from data_tools.prepared import EVENT_MASK_RULES
from eval.evaluate import ConstantMethod, CountImages, SGBMMethod, evaluate, network_predictor
from eval.plots import example_panel, summary_grid
from stereo.config import add_config_arguments, start_cli

METHOD_LABELS = {"snn": "SNN", "ann": "ANN twin", "sgbm": "SGBM", "constant": "constant"}
BASELINES = ("sgbm", "ann", "constant")
SUMMARY_ROWS = 4


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Disparity/depth evaluation by the published MVSEC protocol.")
    parser.add_argument("--checkpoint", type=Path, default=paths.DEFAULT_TRAIN_DIR / paths.BEST_CHECKPOINT_NAME)
    parser.add_argument("--data", type=Path, default=paths.DEFAULT_PREPARED_DIR, help="prepared dataset folder")
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument("--mask", choices=("dense", "events", "both"), default=None,
                        help="ground-truth mask(s) to report (default: config eval.mask)")
    parser.add_argument("--include-empty", action="store_true", default=None,
                        help="count images without valid pixels with zero error (DDES) instead of skipping them")
    parser.add_argument("--baselines", default="",
                        help="comma-separated: sgbm, ann, constant (the median training disparity everywhere)")
    parser.add_argument("--ann-checkpoint", type=Path, default=paths.DEFAULT_TRAIN_ANN_DIR / paths.BEST_CHECKPOINT_NAME)
    parser.add_argument("--viz", action="store_true", help="write panel PNGs and a summary figure")
    parser.add_argument("--viz-indices", default="", help="'all' or comma-separated example indices (default: evenly spaced)")
    parser.add_argument("--out", type=Path, default=paths.DEFAULT_EVAL_DIR)
    add_config_arguments(parser)
    return parser.parse_args(argv)


def parse_baselines(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if unknown := [n for n in names if n not in BASELINES]:
        raise UserError(f"--baselines {text}: unknown baseline(s) {', '.join(unknown)}; expected a subset of {','.join(BASELINES)}")
    return names


def viz_indices(text: str, count: int, default_count: int) -> list[int]:
    """'all', an explicit list, or ``default_count`` evenly spaced indices."""
    if text == "all":
        return list(range(count))
    if text:
        try:
            chosen = sorted({int(v) for v in text.split(",")})
        except ValueError:
            raise UserError(f"--viz-indices {text}: expected 'all' or comma-separated integers") from None
        if bad := [i for i in chosen if not 0 <= i < count]:
            raise UserError(f"--viz-indices: {bad[0]} is outside the split's examples 0..{count - 1}")
        return chosen
    return sorted(set(np.linspace(0, count - 1, min(default_count, count)).round().astype(int).tolist()))


def format_results(results: dict[str, Any], mask_modes: list[str], mask_rule: str, dsec: bool) -> str:
    """The per-image (MVSEC protocol) table per mask; for DSEC also its pixel-pooled benchmark metrics."""
    header = (f"{'method':<9} {'sequence':<24} {'MDE px':>7} {'1PA %':>6} {'2PA %':>6} {'3PA %':>6} {'RMSE':>6} "
              f"{'depth cm':>8} {'median cm':>9} {'images':>9}")
    pooled_header = f"{'method':<9} {'sequence':<24} {'MAE px':>7} {'1PE %':>6} {'2PE %':>6} {'RMSE':>6} {'pixels':>10}"
    lines = []
    for mode in mask_modes:
        label = "dense (all valid pixels)" if mode == "dense" else EVENT_MASK_RULES[mask_rule]
        lines += ["", f"ground truth: {label}; per image, mean over images (MVSEC protocol)", header]
        for method, by_mask in results.items():
            for sequence, m in by_mask[mode].items():
                lines.append(f"{METHOD_LABELS[method]:<9} {sequence:<24} {m['mde_px']:>7.3f} {m['1pa']:>6.1f} {m['2pa']:>6.1f} "
                             f"{m['3pa']:>6.1f} {m['rmse_px']:>6.2f} {m['mean_depth_err_cm']:>8.1f} "
                             f"{m['median_depth_err_cm']:>9.1f} {m['images_used']:>4}/{m['images_total']:<4}")
        if dsec:
            lines += ["", f"ground truth: {label}; pooled over pixels (DSEC benchmark)", pooled_header]
            for method, by_mask in results.items():
                for sequence, m in by_mask[mode].items():
                    lines.append(f"{METHOD_LABELS[method]:<9} {sequence:<24} {m['dsec_mae_px']:>7.3f} {m['dsec_1pe']:>6.1f} "
                                 f"{m['dsec_2pe']:>6.1f} {m['dsec_rmse_px']:>6.2f} {m['num_pixels']:>10}")
    return "\n".join(lines)


def write_csv(path: Path, results: dict[str, Any]) -> None:
    fields = ("method", "mask", "sequence", *METRIC_KEYS, *POOLED_KEYS, "images_used", "images_total", "num_pixels")
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for method, by_mask in results.items():
            for mode, by_seq in by_mask.items():
                for sequence, m in by_seq.items():
                    writer.writerow({"method": method, "mask": mode, "sequence": sequence, **{k: m[k] for k in fields[3:]}})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg, device = start_cli(args)
    mask = args.mask or cfg.eval.mask
    mask_modes = ["dense", "events"] if mask == "both" else [mask]
    include_empty = cfg.eval.include_empty if args.include_empty is None else True
    baselines = parse_baselines(args.baselines)
    limit = cfg.eval.max_examples

    main_run, ckpt, dataset = network_predictor(args.checkpoint, device, args.data, args.split, limit, "--checkpoint")
    main_name = "ann" if ckpt["ann"] else "snn"
    available = len(dataset.manifest["splits"][args.split])
    if len(dataset) < available:
        print(f"evaluating the first {len(dataset)} of {available} {args.split} examples (eval.max_examples = {limit})")
    methods = {main_name: main_run}
    checkpoints = {main_name: str(args.checkpoint.resolve())}
    if "ann" in baselines:
        if main_name == "ann":
            raise UserError(f"--checkpoint {args.checkpoint} is already an ANN twin; drop 'ann' from --baselines")
        methods["ann"], _, _ = network_predictor(args.ann_checkpoint, device, args.data, args.split, limit,
                                                 "--ann-checkpoint", want_ann=True, reference=dataset)
        checkpoints["ann"] = str(args.ann_checkpoint.resolve())
    counts = CountImages(args.data, args.split, limit) if ("sgbm" in baselines or args.viz) else None
    if "sgbm" in baselines:
        sgbm = SGBMMethod(args.data, args.split, limit, cfg.eval.sgbm_tune_examples, counts)
        methods["sgbm"] = sgbm
        print(f"SGBM tuned on {sgbm.tuned_on}: {sgbm.params.to_dict()}")
    if "constant" in baselines:
        methods["constant"] = ConstantMethod(args.data)
        print(f"constant baseline: {methods['constant'].value:.2f} px (median training disparity) everywhere")

    colour_max = float(dataset.manifest["max_disparity_in_data_px"]) or float(ckpt["architecture"]["max_disparity_px"])
    chosen = set(viz_indices(args.viz_indices, len(dataset), cfg.eval.viz_examples)) if args.viz else set()
    summary_rows: list[dict[str, Any]] = []
    panels: list[str] = []

    def draw(index: int, item: dict[str, Any], preds: dict[str, np.ndarray]) -> None:
        if index not in chosen:
            return
        events, _, _ = counts.pair(index, item)
        gt, valid = item["disp_px"].numpy(), item["valid"].numpy().astype(bool)
        name = f"{index:05d}_{item['sequence']}_{item['frame_index']}.png"
        title = f"{item['sequence']} frame {item['frame_index']} ({METHOD_LABELS[main_name]}, {args.checkpoint.name})"
        example_panel(args.out / "panels" / name, events, preds[main_name], gt, valid, colour_max, title)
        panels.append(name)
        if len(summary_rows) < SUMMARY_ROWS:
            summary_rows.append({"events": events, "gt": gt, "valid": valid,
                                 "title": f"{item['sequence']} #{item['frame_index']}", **preds})

    evaluation = evaluate(dataset, methods, mask_modes, include_empty, draw if args.viz else None)
    results, seconds = evaluation.results, evaluation.seconds_per_example
    record = {"sgbm": methods["sgbm"].record()} if "sgbm" in methods else {}
    manifest = dataset.manifest
    print(format_results(results, mask_modes, manifest["event_mask_rule"], manifest["dataset"] == "dsec"))
    print("\nseconds per example: " + ", ".join(f"{METHOD_LABELS[m]} {s:.3f}" for m, s in seconds.items()))
    summary = {
        "split": args.split, "data": str(args.data.resolve()), "checkpoints": checkpoints,
        "examples": len(dataset), "examples_in_split": available,
        "include_empty": include_empty, "masks": mask_modes, "labels": {m: METHOD_LABELS[m] for m in methods},
        "results": results, "seconds_per_example": seconds, "device": str(device), **record,
    }
    write_json_atomic(args.out / "metrics.json", summary)
    write_csv(args.out / "metrics.csv", results)
    print(f"\nwrote {args.out / 'metrics.json'} and {args.out / 'metrics.csv'}")
    if args.viz and summary_rows:
        summary_grid(args.out / "summary.png", summary_rows, summary["labels"], colour_max)
        print(f"wrote {len(panels)} panels to {args.out / 'panels'} and {args.out / 'summary.png'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
