"""Run several disparity methods over one split and score them by the published protocol (SPEC §8).

A method is a function ``(index, item) -> (H, W) disparity``: a network checkpoint or SGBM. Every
method sees every example of the split; metrics are per image, then averaged per sequence and overall,
for the dense and the event-masked ground truth.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm import tqdm

from common.errors import UserError
from common.metrics import group_aggregate, image_metrics
from data_tools.dataset import StereoEventDataset, check_max_disparity, valid_disparity
from data_tools.prepared import read_manifest
from eval.runner import check_input_format, open_split, predict
from eval.sgbm import count_image, parameter_grid, sgbm_disparity, tune
from stereo.checkpoint import load_model_from_checkpoint

Predictor = Callable[[int, dict[str, Any]], np.ndarray]
MASK_MODES = ("dense", "events")


def gt_masks(item: dict[str, Any]) -> dict[str, np.ndarray]:
    """Dense = every valid GT pixel; events = valid pixels of the prepared event mask (its manifest's rule)."""
    valid = item["valid"].numpy().astype(bool)
    return {"dense": valid, "events": valid & item["event_mask"].numpy().astype(bool)}


class CountImages:
    """Event-count images (uint8) of both views, from the same split voxelised as one count bin."""

    def __init__(self, data_dir: Path, split: str, max_examples: int = 0) -> None:
        self.dataset = open_split(data_dir, split, 1, "count", max_examples)

    def __len__(self) -> int:
        return len(self.dataset)

    def pair(self, index: int, expect: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        item = self.dataset[index]
        if expect is not None and (item["sequence"], item["frame_index"]) != (expect["sequence"], expect["frame_index"]):
            raise RuntimeError("count images out of step with the evaluated examples")
        return count_image(item["left"].numpy()), count_image(item["right"].numpy()), item


def network_predictor(path: Path, device: torch.device, data_dir: Path, split: str, max_examples: int,
                      option: str, want_ann: bool | None = None, reference: StereoEventDataset | None = None
                      ) -> tuple[Predictor, dict[str, Any], StereoEventDataset]:
    """A checkpoint as a method; it reads its own voxelisation (T, encoding) of the split."""
    model, ckpt = load_model_from_checkpoint(path, device, option, want_ann=want_ann)
    dataset = open_split(data_dir, split, int(ckpt["num_bins"]), ckpt["encoding"], max_examples)
    check_input_format(dataset, ckpt, path)
    check_max_disparity(dataset.manifest, model.max_disp, str(path), data_dir)
    same = reference is not None and (dataset.num_bins, dataset.encoding) == (reference.num_bins, reference.encoding)

    def run(index: int, item: dict[str, Any]) -> np.ndarray:
        own = item if same or reference is None else dataset[index]
        return predict(model, own["left"], own["right"], device)

    return run, ckpt, dataset


class SGBMMethod:
    """SGBM as a method, its parameters tuned on the validation split over the full grid; ``record()``
    says how it was tuned and which fraction of its pixels SGBM itself found (the rest are filled)."""

    def __init__(self, data_dir: Path, split: str, max_examples: int, tune_examples: int,
                 counts: CountImages | None = None) -> None:
        val = CountImages(data_dir, "val", tune_examples)
        pairs, gts, masks = [], [], []
        for index in range(len(val)):
            left, right, item = val.pair(index)
            pairs.append((left, right))
            gts.append(item["disp_px"].numpy())
            masks.append(gt_masks(item)["dense"])
        # SGBM searches 1..num_disparities (a multiple of 16): at least 48, and enough for the data's range.
        data_max = int(val.dataset.manifest.get("max_disparity_in_data_px", 0))
        num_disparities = max(48, -(-(data_max + 1) // 16) * 16)
        self.params, self.grid = tune(pairs, gts, masks, parameter_grid(num_disparities))
        self.tuned_on = f"val ({len(val)} examples, dense MDE)"
        self.counts = counts or CountImages(data_dir, split, max_examples)
        self.valid_fractions: list[float] = []

    def __call__(self, index: int, item: dict[str, Any]) -> np.ndarray:
        left, right, _ = self.counts.pair(index, item)
        disp, valid_fraction = sgbm_disparity(left, right, self.params)
        self.valid_fractions.append(valid_fraction)
        return disp

    def record(self) -> dict[str, Any]:
        return {"params": self.params.to_dict(), "grid": self.grid, "tuned_on": self.tuned_on,
                "invalid_handling": "SGBM's invalid pixels filled from the nearest valid SGBM pixel; all GT pixels scored",
                "mean_valid_fraction": float(np.mean(self.valid_fractions)) if self.valid_fractions else None}


def median_training_disparity(data_dir: Path) -> float:
    """The median valid ground-truth disparity of the training split (read from the prepared maps only)."""
    manifest = read_manifest(data_dir)
    values, handles = [], {}
    try:
        for seq, row in manifest["splits"]["train"]:
            if seq not in handles:
                handles[seq] = h5py.File(Path(data_dir) / manifest["sequences"][seq]["file"], "r")
            disp = handles[seq]["disp_px"][row]
            values.append(disp[valid_disparity(disp)])
    finally:
        for handle in handles.values():
            handle.close()
    known = np.concatenate(values) if values else np.zeros(0)
    if not known.size:
        raise UserError(f"--data {data_dir}: the training split has no valid ground truth for the constant baseline")
    return float(np.median(known))


class ConstantMethod:
    """The median training disparity everywhere: the "predict the mean" plateau a network must leave."""

    def __init__(self, data_dir: Path) -> None:
        self.value = median_training_disparity(data_dir)

    def __call__(self, index: int, item: dict[str, Any]) -> np.ndarray:
        return np.full(tuple(item["disp_px"].shape), self.value, dtype=np.float32)


# results[method][mask][group] -> metrics: method is a key of the methods passed in (snn, ann, sgbm),
# mask one of MASK_MODES, group a sequence name or "all"; the metrics are common.metrics.METRIC_KEYS
# plus images_used, images_total and num_pixels (common.metrics.aggregate).
Results = dict[str, dict[str, dict[str, dict[str, float]]]]


@dataclass
class Evaluation:
    """The scores of every method (``Results``) and the seconds each took per example."""

    results: Results
    seconds_per_example: dict[str, float]

    def metric(self, method: str, key: str = "mde_px", mask: str = "dense", group: str = "all") -> float:
        return float(self.results[method][mask][group][key])


def evaluate(
    dataset: StereoEventDataset,
    methods: dict[str, Predictor],
    mask_modes: Sequence[str] = MASK_MODES,
    include_empty: bool = False,
    on_example: Callable[[int, dict[str, Any], dict[str, np.ndarray]], None] | None = None,
    progress: str = "evaluate",
) -> Evaluation:
    """Every method on every example of ``dataset``, scored per image and aggregated (``Results``)."""
    for mode in mask_modes:
        if mode not in MASK_MODES:
            raise UserError(f"--mask {mode}: expected dense, events or both")
    records: dict[str, dict[str, list]] = {m: {mode: [] for mode in mask_modes} for m in methods}
    seconds = dict.fromkeys(methods, 0.0)
    for index in tqdm(range(len(dataset)), desc=progress, unit="example"):
        item = dataset[index]
        gt = item["disp_px"].numpy()
        masks = gt_masks(item)
        fb = dataset.focal_baseline_of(item["sequence"])
        preds = {}
        for name, method in methods.items():
            start = time.perf_counter()
            preds[name] = method(index, item)
            seconds[name] += time.perf_counter() - start
            for mode in mask_modes:
                records[name][mode].append((item["sequence"], image_metrics(preds[name], gt, masks[mode], fb)))
        if on_example is not None:
            on_example(index, item, preds)
    results = {name: {mode: group_aggregate(recs, include_empty) for mode, recs in by_mask.items()}
               for name, by_mask in records.items()}
    return Evaluation(results, {name: s / max(len(dataset), 1) for name, s in seconds.items()})
