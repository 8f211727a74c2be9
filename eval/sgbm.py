"""Classical baseline: OpenCV StereoSGBM on event-count images of the two views.

An event-count image is the number of events per pixel in the example's 50 ms window (both
polarities), clipped at its 99th percentile of non-zero pixels and scaled to uint8, optionally blurred
so that sparse events give SGBM some texture to match. SGBM's fixed-point output is divided by 16.
SGBM searches 1 .. num_disparities px: a prediction of 0 px would be a depth of f*B / 1e-7 (kilometres) and,
as the protocol clips nothing, one such pixel would dominate the mean depth error (ground truth is never 0).
Invalid predictions (SGBM's "no match" value minDisparity - 1, and the left border where no match exists)
are filled from the nearest valid SGBM pixel, so every ground-truth pixel is scored and the baseline
is never flattered by dropping its hardest pixels; the fraction SGBM left invalid is reported.
A small grid of parameters is tuned on the validation split by mean disparity error.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from scipy import ndimage

CLIP_PERCENTILE = 99.0
MIN_DISPARITY_PX = 1


@dataclass(frozen=True)
class SGBMParams:
    block_size: int = 7
    blur_sigma_px: float = 1.0
    uniqueness_ratio: int = 5
    num_disparities: int = 48  # a multiple of 16; with MIN_DISPARITY_PX = 1 the search covers 1..48 px

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def parameter_grid(num_disparities: int = 48) -> list[SGBMParams]:
    """The grid searched on validation: block size x blur x uniqueness."""
    return [
        SGBMParams(block, blur, unique, num_disparities)
        for block, blur, unique in itertools.product((5, 9, 13), (0.0, 1.5), (0, 10))
    ]


def count_image(counts: np.ndarray) -> np.ndarray:
    """Events per pixel, (..., H, W) summed over leading axes -> uint8 (H, W) scaled to its 99th percentile."""
    total = np.asarray(counts, dtype=np.float32)
    total = total.reshape(-1, *total.shape[-2:]).sum(0)
    nonzero = total[total > 0]
    if nonzero.size == 0:
        return np.zeros(total.shape, np.uint8)
    cap = max(float(np.percentile(nonzero, CLIP_PERCENTILE)), 1.0)
    return np.round(np.clip(total / cap, 0.0, 1.0) * 255).astype(np.uint8)


def fill_invalid(disp_px: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace invalid pixels by the value of the nearest valid one; all zeros when none is valid."""
    if valid.all():
        return disp_px
    if not valid.any():
        return np.zeros_like(disp_px)
    _, (rows, cols) = ndimage.distance_transform_edt(~valid, return_indices=True)
    return disp_px[rows, cols]


def sgbm_disparity(left_u8: np.ndarray, right_u8: np.ndarray, params: SGBMParams) -> tuple[np.ndarray, float]:
    """Disparity (px, float32, every pixel filled) and the fraction of pixels SGBM itself found valid."""
    if params.blur_sigma_px > 0:
        left_u8 = cv2.GaussianBlur(left_u8, (0, 0), params.blur_sigma_px)
        right_u8 = cv2.GaussianBlur(right_u8, (0, 0), params.blur_sigma_px)
    block = params.block_size
    matcher = cv2.StereoSGBM_create(
        minDisparity=MIN_DISPARITY_PX,
        numDisparities=params.num_disparities,
        blockSize=block,
        P1=8 * block * block,
        P2=32 * block * block,
        uniquenessRatio=params.uniqueness_ratio,
        speckleWindowSize=0,
        mode=cv2.STEREO_SGBM_MODE_SGBM,
    )
    raw = matcher.compute(left_u8, right_u8)
    disp_px = raw.astype(np.float32) / 16.0
    valid = raw >= 16 * MIN_DISPARITY_PX
    return fill_invalid(disp_px, valid).astype(np.float32), float(valid.mean())


def mean_abs_error(pred_px: np.ndarray, gt_px: np.ndarray, mask: np.ndarray) -> float | None:
    return float(np.abs(pred_px[mask] - gt_px[mask]).mean()) if mask.any() else None


def tune(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    gts_px: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    grid: Sequence[SGBMParams],
) -> tuple[SGBMParams, list[dict[str, float]]]:
    """Pick the grid point with the lowest per-image mean disparity error over ``pairs`` (uint8 images)."""
    results = []
    for params in grid:
        errors = [
            mean_abs_error(sgbm_disparity(left, right, params)[0], gt, mask)
            for (left, right), gt, mask in zip(pairs, gts_px, masks)
        ]
        errors = [e for e in errors if e is not None]
        results.append({**params.to_dict(), "val_mde_px": float(np.mean(errors)) if errors else float("inf")})
    best = min(range(len(grid)), key=lambda i: results[i]["val_mde_px"])
    return grid[best], results
