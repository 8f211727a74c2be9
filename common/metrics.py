"""Disparity and depth metrics by the published MVSEC protocol (SPEC §8).

Every metric is computed per image over its valid ground-truth pixels, then averaged with a plain
mean over images (DDES's convention, followed by later MVSEC papers). Images without a valid pixel
are skipped by default; ``include_empty=True`` gives DDES's behaviour (such an image counts with zero
error). No crop, no clipping. Depth = f*B / (disparity + 1e-7) for prediction and ground truth alike.

DSEC's benchmark pools over pixels instead: MAE, 1PE, 2PE (% of pixels with error > 1, 2 px) and RMSE
over every ground-truth pixel of the split (or sequence) at once, so images with more ground truth
weigh more. Both are computed from the same per-image sums (``POOLED_KEYS``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch

# Small constant of the published depth conversion (SPEC §8): depth = f*B / (disparity + DEPTH_EPS).
DEPTH_EPS = 1e-7
PIXEL_THRESHOLDS = (1, 2, 3)
METRIC_KEYS = ("mde_px", "1pa", "2pa", "3pa", "rmse_px", "mean_depth_err_cm", "median_depth_err_cm")
POOLED_KEYS = ("dsec_mae_px", "dsec_1pe", "dsec_2pe", "dsec_rmse_px")
_PIXEL_SUMS = ("sum_abs_err_px", "sum_sq_err_px", "num_err_above_1", "num_err_above_2")


def _as_tensor(values: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(values).to(device="cpu", dtype=dtype)


def image_metrics(
    pred_disp_px: np.ndarray | torch.Tensor,
    gt_disp_px: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor,
    focal_baseline_px_m: float,
) -> dict[str, float] | None:
    """Metrics of one image over ``mask`` pixels (already restricted to valid GT); None if none is left.

    The mask is also intersected with finite ground truth, so inf/NaN GT can never leak into a mean.
    nPA counts |err| <= n (nPE is strict: |err| > n). The median depth error is the lower middle value.
    """
    pred = _as_tensor(pred_disp_px, torch.float64)
    gt = _as_tensor(gt_disp_px, torch.float64)
    keep = _as_tensor(mask, torch.bool) & torch.isfinite(gt)
    if pred.shape != gt.shape or keep.shape != gt.shape:
        raise ValueError(f"shape mismatch: pred {tuple(pred.shape)}, gt {tuple(gt.shape)}, mask {tuple(keep.shape)}")
    count = int(keep.sum())
    if count == 0:
        return None
    p, g = pred[keep], gt[keep]
    err = (p - g).abs()
    depth_err_m = (focal_baseline_px_m / (p + DEPTH_EPS) - focal_baseline_px_m / (g + DEPTH_EPS)).abs()
    out = {
        "mde_px": float(err.mean()),
        "rmse_px": float(err.pow(2).mean().sqrt()),
        "mean_depth_err_cm": 100.0 * float(depth_err_m.mean()),
        "median_depth_err_cm": 100.0 * float(depth_err_m.median()),  # torch: lower middle value
        "num_pixels": count,
        "sum_abs_err_px": float(err.sum()),
        "sum_sq_err_px": float(err.pow(2).sum()),
        "num_err_above_1": int((err > 1).sum()),
        "num_err_above_2": int((err > 2).sum()),
    }
    for n in PIXEL_THRESHOLDS:
        out[f"{n}pa"] = 100.0 - 100.0 * float((err > n).double().mean())
    return out


def empty_image_metrics() -> dict[str, float]:
    """DDES's value for an image without valid pixels: zero error, nPA = 100."""
    out = {key: 0.0 for key in METRIC_KEYS}
    out.update({f"{n}pa": 100.0 for n in PIXEL_THRESHOLDS})
    out.update(dict.fromkeys(("num_pixels", *_PIXEL_SUMS), 0))
    return out


def aggregate(per_image: Sequence[dict[str, float] | None], include_empty: bool = False) -> dict[str, float]:
    """Plain mean over images of each metric; ``images_used`` and ``images_total`` say what was averaged.

    ``None`` entries are images without a valid pixel: skipped, or counted as zero error with
    ``include_empty``. With no usable image the metrics are NaN (never a silent 0).
    """
    used = [m if m is not None else empty_image_metrics() for m in per_image if m is not None or include_empty]
    out: dict[str, float] = {"images_used": len(used), "images_total": len(per_image)}
    for key in METRIC_KEYS:
        out[key] = float(np.mean([m[key] for m in used])) if used else math.nan
    out["num_pixels"] = int(sum(m["num_pixels"] for m in used))
    out.update(pooled(used, out["num_pixels"]))
    return out


def pooled(used: Sequence[dict[str, float]], num_pixels: int) -> dict[str, float]:
    """DSEC's pixel-pooled MAE, 1PE, 2PE and RMSE from the per-image sums (NaN without a pixel)."""
    if num_pixels == 0:
        return dict.fromkeys(POOLED_KEYS, math.nan)
    total = {key: sum(m[key] for m in used) for key in _PIXEL_SUMS}
    return {"dsec_mae_px": total["sum_abs_err_px"] / num_pixels,
            "dsec_1pe": 100.0 * total["num_err_above_1"] / num_pixels,
            "dsec_2pe": 100.0 * total["num_err_above_2"] / num_pixels,
            "dsec_rmse_px": math.sqrt(total["sum_sq_err_px"] / num_pixels)}


def group_aggregate(
    records: Iterable[tuple[str, dict[str, float] | None]], include_empty: bool = False
) -> dict[str, dict[str, float]]:
    """Aggregate (group, per-image metrics) pairs per group and over all of them (key ``"all"``)."""
    groups: dict[str, list[dict[str, float] | None]] = {}
    everything: list[dict[str, float] | None] = []
    for group, metrics in records:
        groups.setdefault(group, []).append(metrics)
        everything.append(metrics)
    out = {group: aggregate(values, include_empty) for group, values in sorted(groups.items())}
    out["all"] = aggregate(everything, include_empty)
    return out
