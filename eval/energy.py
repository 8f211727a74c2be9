"""Energy a neuromorphic chip would spend per inference, layer by layer (SPEC §9), and accuracy vs energy.

    python eval/energy.py [--checkpoint runs/train/best.pt] [--ann-checkpoint runs/train_ann/best.pt]
        [--data data/prepared] [--split test] [--num-examples 8] [--extra-checkpoints A.pt B.pt ...]
        [--metrics runs/eval/metrics.json] [--out runs/energy]

Counts synaptic operations (spike-fed layers) and MACs (layers fed non-binary values) on real
examples with spikingjelly's op_counter, BN folded; energy = SOPs x E_AC + MACs x E_MAC (config
section ``energy``). Beside it, the memory model of eval/memory_energy.py (Lemaire et al. 2022: ops,
address computations and SRAM traffic of weights, membranes and spikes; docs/energy_models.md), both
with their ANN/SNN ratio. Writes energy_layers.csv, energy.json, energy_bars.png and accuracy_energy.png
(MDE against mJ for the SNN, any --extra-checkpoints, e.g. models trained with other firing-rate
penalties, the ANN twin, and SGBM as a line: it has no energy model here).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from common import paths
from common.atomic import write_json_atomic
from common.errors import UserError, run_cli
from common.reading import read_json
from eval.energy_report import (
    PAPER_ENERGY_MJ,
    PAPER_RATIO,
    energy_rows,
    format_table,
    totals,
    write_rows_csv,
)
from eval.evaluate import SGBMMethod, evaluate, network_predictor
from eval.memory_energy import constants, format_models_table, lemaire_config, lemaire_energy, ratio
from eval.opcount import count_operations
from eval.plots import TradeoffPoint, accuracy_energy, energy_bars
from eval.runner import check_input_format, open_split
from stereo.checkpoint import load_model_from_checkpoint
from stereo.config import Config, add_config_arguments, start_cli

DEFAULT_ANN = paths.DEFAULT_TRAIN_ANN_DIR / paths.BEST_CHECKPOINT_NAME
DEFAULT_METRICS = paths.DEFAULT_EVAL_DIR / "metrics.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Energy per inference: SOPs x E_AC + MACs x E_MAC per layer, "
                                                 "and with memory traffic (Lemaire 2022).")
    parser.add_argument("--checkpoint", type=Path, default=paths.DEFAULT_TRAIN_DIR / paths.BEST_CHECKPOINT_NAME)
    parser.add_argument("--ann-checkpoint", type=Path, default=None,
                        help=f"ANN twin checkpoint (default: {DEFAULT_ANN} when it exists)")
    parser.add_argument("--data", type=Path, default=paths.DEFAULT_PREPARED_DIR, help="prepared dataset folder")
    parser.add_argument("--split", choices=("test", "val", "train"), default="test")
    parser.add_argument("--num-examples", type=int, default=None,
                        help="examples counted (default: config energy.num_examples)")
    parser.add_argument("--extra-checkpoints", type=Path, nargs="*", default=[],
                        help="more SNN checkpoints for the accuracy-energy picture (e.g. other rate penalties)")
    parser.add_argument("--metrics", type=Path, default=DEFAULT_METRICS,
                        help="eval/disparity.py's metrics.json: MDEs reused for the picture when it matches")
    parser.add_argument("--no-tradeoff", action="store_true", help="skip the accuracy-energy picture")
    parser.add_argument("--out", type=Path, default=paths.DEFAULT_ENERGY_DIR)
    add_config_arguments(parser)
    return parser.parse_args(argv)


def measure(path: Path, device: torch.device, data: Path, split: str, num_examples: int, cfg: Config, option: str,
            want_ann: bool) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any], tuple[int, int]]:
    """Per-layer energy rows (SOP model) and memory-model totals of one checkpoint over the first
    ``num_examples`` examples of the split."""
    model, ckpt = load_model_from_checkpoint(path, device, option, want_ann=want_ann)
    dataset = open_split(data, split, int(ckpt["num_bins"]), ckpt["encoding"], num_examples)
    check_input_format(dataset, ckpt, path)
    inputs = [(item["left"][None].to(device), item["right"][None].to(device))
              for item in (dataset[i] for i in range(len(dataset)))]
    counts = count_operations(model, tqdm(inputs, desc=f"count {path.name}", unit="example"), dense_macs=want_ann)
    steps = 1 if want_ann else int(ckpt["num_bins"])  # the twin runs once on the input summed over time
    memory = lemaire_energy(model, tqdm(inputs, desc=f"memory model {path.name}", unit="example"), steps, cfg.energy,
                            counts)
    return energy_rows(counts, cfg.energy.e_ac_pj, cfg.energy.e_mac_pj), memory, ckpt, (dataset.height, dataset.width)


def spike_rate(rows: list[dict[str, Any]]) -> float | None:
    """Mean input firing rate over spike-fed layers, weighted by their SOPs' share (None without any)."""
    spiking = [r for r in rows if r["input_rate"] is not None and r["synops"] > 0]
    if not spiking:
        return None
    return sum(r["input_rate"] * r["synops"] for r in spiking) / sum(r["synops"] for r in spiking)


def model_label(ckpt: dict[str, Any], path: Path) -> str:
    if ckpt["ann"]:
        return "ANN twin"
    penalty = ckpt.get("config", {}).get("train", {}).get("rate_penalty")
    if not isinstance(penalty, (int, float)):
        return f"SNN {path.name}"
    return f"SNN T={int(ckpt['num_bins'])} λ={penalty:g}"  # the two knobs of the accuracy-energy frontier


def recorded_mde(metrics: dict[str, Any] | None, method: str, path: Path | None, data: Path, split: str) -> float | None:
    """Overall dense MDE of ``method`` from a metrics.json of the same data, split (and checkpoint)."""
    if not metrics or metrics.get("split") != split or metrics.get("data") != str(data.resolve()):
        return None
    if path is not None and metrics.get("checkpoints", {}).get(method) != str(path.resolve()):
        return None
    try:
        return float(metrics["results"][method]["dense"]["all"]["mde_px"])
    except (KeyError, TypeError):  # not recorded, or null (no valid image)
        return None


def read_metrics(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    metrics = read_json(path, "a readable metrics.json of eval/disparity.py", "--metrics")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("results", {}), dict):
        raise UserError(f"--metrics {path}: valid JSON but not the layout eval/disparity.py writes")
    return metrics


def tradeoff_points(args: argparse.Namespace, cfg: Config, device: torch.device,
                    measured: list[tuple[Path, dict[str, Any], float]], metrics: dict[str, Any] | None) -> list[TradeoffPoint]:
    """(checkpoint, ckpt, mJ) triples -> points with their MDE (reused from --metrics or evaluated here)."""
    limit = cfg.energy.tradeoff_examples
    points = []
    for path, ckpt, energy_mj in measured:
        method = "ann" if ckpt["ann"] else "snn"
        mde = recorded_mde(metrics, method, path, args.data, args.split)
        if mde is None:
            run, _, dataset = network_predictor(path, device, args.data, args.split, limit, str(path))
            mde = evaluate(dataset, {method: run}, ["dense"], progress=f"MDE {path.name}").metric(method)
        label = model_label(ckpt, path)
        if any(p.label == label for p in points):
            label = f"{label} ({path.parent.name}/{path.name})"
        points.append(TradeoffPoint(label, mde, energy_mj, method))
    mde = recorded_mde(metrics, "sgbm", None, args.data, args.split)
    if mde is None:
        sgbm = SGBMMethod(args.data, args.split, limit, cfg.eval.sgbm_tune_examples)
        dataset = open_split(args.data, args.split, 1, "count", limit)
        mde = evaluate(dataset, {"sgbm": sgbm}, ["dense"], progress="MDE SGBM").metric("sgbm")
    points.append(TradeoffPoint("SGBM (no energy model)", mde, None, "sgbm"))
    return points


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg, device = start_cli(args)
    num_examples = cfg.energy.num_examples if args.num_examples is None else args.num_examples
    if num_examples < 1:
        raise UserError(f"--num-examples {num_examples}: expected at least 1")
    ann_path = args.ann_checkpoint or (DEFAULT_ANN if DEFAULT_ANN.is_file() else None)
    for option, path in [("--ann-checkpoint", args.ann_checkpoint)] + [("--extra-checkpoints", p) for p in args.extra_checkpoints]:
        if path is not None and not path.is_file():  # fail before minutes of counting, not after
            raise UserError(f"{option} {path}: checkpoint not found")
    metrics = None if args.no_tradeoff else read_metrics(args.metrics)  # every input checked before any output
    lemaire_config(cfg.energy)  # the memory model's constants too

    snn_rows, snn_memory, snn_ckpt, (height, width) = measure(args.checkpoint, device, args.data, args.split,
                                                              num_examples, cfg, "--checkpoint", want_ann=False)
    snn_total = totals(snn_rows)
    print(format_table(snn_rows, f"SNN {args.checkpoint} (per inference at {height}x{width}, both views)"))
    summary: dict[str, Any] = {
        "e_ac_pj": cfg.energy.e_ac_pj, "e_mac_pj": cfg.energy.e_mac_pj, "num_examples": num_examples,
        "split": args.split, "resolution": [height, width], "paper_energy_mj": PAPER_ENERGY_MJ, "paper_ratio": PAPER_RATIO,
        "snn": {"checkpoint": str(args.checkpoint), "layers": snn_rows, "total": snn_total,
                "mean_input_spike_rate": spike_rate(snn_rows)},
        "memory_model": {"model": "Lemaire et al. 2022 (spikingjelly LemaireEnergyProfiler), docs/energy_models.md",
                         "constants": constants(cfg.energy), "snn": snn_memory},
    }
    measured = [(args.checkpoint, snn_ckpt, snn_total["energy_mj"])]
    sop_mj, memory_mj = {"snn": snn_total["energy_mj"]}, {"snn": snn_memory}  # the two models, by network
    ann_rows = None
    if ann_path is not None:
        ann_rows, ann_memory, ann_ckpt, _ = measure(ann_path, device, args.data, args.split, num_examples, cfg,
                                                    "--ann-checkpoint", want_ann=True)
        ann_total = totals(ann_rows)
        print("\n" + format_table(ann_rows, f"ANN twin {ann_path}"))
        summary["ann"] = {"checkpoint": str(ann_path), "layers": ann_rows, "total": ann_total}
        summary["ann_over_snn"] = ratio(ann_total["energy_mj"], snn_total["energy_mj"])
        summary["memory_model"]["ann"] = ann_memory
        summary["memory_model"]["ann_over_snn"] = ratio(ann_memory["energy_mj"], snn_memory["energy_mj"])
        sop_mj["ann"], memory_mj["ann"] = ann_total["energy_mj"], ann_memory
        measured.append((ann_path, ann_ckpt, ann_total["energy_mj"]))
    else:
        print(f"\nno ANN twin checkpoint ({DEFAULT_ANN} not found, no --ann-checkpoint): SNN only")

    print("\n" + format_models_table(sop_mj, memory_mj, cfg.energy))
    rate = summary["snn"]["mean_input_spike_rate"]
    print(f"\nSNN: {snn_total['energy_mj']:.4f} mJ per inference at {height}x{width} "
          f"({snn_total['synops']:.4g} SOPs, {snn_total['macs']:.4g} MACs"
          f"{'' if rate is None else f', SOP-weighted input spike rate {100 * rate:.1f}%'}); paper: {PAPER_ENERGY_MJ} mJ")
    if ann_rows is not None:
        sop_ratio, memory_ratio = summary["ann_over_snn"], summary["memory_model"]["ann_over_snn"]
        print(f"ANN twin: {summary['ann']['total']['energy_mj']:.4f} mJ; ANN/SNN = "
              f"{'n/a' if sop_ratio is None else f'{sop_ratio:.1f}x'} (paper: {PAPER_RATIO:g}x)")
        print(f"memory model: SNN {snn_memory['energy_mj']:.4f} mJ, ANN twin {ann_memory['energy_mj']:.4f} mJ; "
              f"ANN/SNN = {'n/a' if memory_ratio is None else f'{memory_ratio:.2f}x'}")

    for path in args.extra_checkpoints:
        rows, memory, ckpt, _ = measure(path, device, args.data, args.split, num_examples, cfg, "--extra-checkpoints",
                                        want_ann=False)
        summary.setdefault("extra", []).append({"checkpoint": str(path), "total": totals(rows),
                                                "mean_input_spike_rate": spike_rate(rows), "memory_model": memory})
        measured.append((path, ckpt, totals(rows)["energy_mj"]))
        print(f"{model_label(ckpt, path)} ({path}): {totals(rows)['energy_mj']:.4f} mJ "
              f"(memory model {memory['energy_mj']:.4f} mJ)")

    args.out.mkdir(parents=True, exist_ok=True)
    write_rows_csv(args.out / "energy_layers.csv", {"snn": snn_rows, **({"ann": ann_rows} if ann_rows else {})})
    energy_bars(args.out / "energy_bars.png", snn_rows, ann_rows)
    if not args.no_tradeoff:
        points = tradeoff_points(args, cfg, device, measured, metrics)
        summary["tradeoff"] = [vars(p) for p in points]
        accuracy_energy(args.out / "accuracy_energy.png", points, PAPER_ENERGY_MJ)
        print("accuracy vs energy: " + "; ".join(
            f"{p.label}: MDE {p.mde_px:.3f} px" + ("" if p.energy_mj is None else f", {p.energy_mj:.4f} mJ") for p in points))
    write_json_atomic(args.out / "energy.json", summary)
    print(f"wrote {args.out}/energy.json, energy_layers.csv, energy_bars.png"
          f"{'' if args.no_tradeoff else ', accuracy_energy.png'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
