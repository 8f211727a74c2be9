"""MVSEC constants and the depth <-> disparity conversion (SPEC §2).

One place for every number of the published protocol, so that the reader, the
synthetic generator, the network and the metrics cannot disagree.
"""

from __future__ import annotations

import numpy as np

from common.metrics import DEPTH_EPS

SENSOR_HEIGHT_PX = 260
SENSOR_WIDTH_PX = 346

# indoor_flying rectified intrinsics (left camera) and baseline.
FOCAL_PX = 199.6530
CX_PX = 177.4328
CY_PX = 126.8122
BASELINE_M = 0.09988
FOCAL_BASELINE_PX_M = {
    "indoor_flying": 19.941772,
    "outdoor_day": 19.635287,
    "outdoor_night": 19.651191,
}
SUPPORTED_FAMILIES = ("indoor_flying",)

WINDOW_MS = 50
DEFAULT_NUM_BINS = 5
EVENT_MASK_COUNT = 15_000
MAX_DISPARITY_IN_DATA_PX = 37
NETWORK_MAX_DISPARITY_PX = 48
DEPTH_RATE_HZ = 20

# Inclusive ground-truth index ranges kept, per indoor_flying sequence (real recordings only).
TEST_FRAME_FILTER = {"indoor_flying1": (140, 1200), "indoor_flying2": (120, 1420), "indoor_flying3": (73, 1615)}
TRAIN_FRAME_FILTER = {"indoor_flying1": (80, 1259), "indoor_flying2": (160, 1579), "indoor_flying3": (125, 1814)}
# split -> (training sequences, evaluation sequence)
SPLITS = {
    1: (("indoor_flying2", "indoor_flying3"), "indoor_flying1"),
    2: (("indoor_flying1", "indoor_flying3"), "indoor_flying2"),
    3: (("indoor_flying1", "indoor_flying2"), "indoor_flying3"),
}
NUM_VALIDATION_EXAMPLES = 200


def depth_to_disparity(depth_m: np.ndarray, focal_baseline_px_m: float = FOCAL_BASELINE_PX_M["indoor_flying"]) -> np.ndarray:
    """Disparity in pixels; NaN where depth is NaN, inf, zero or negative (unknown ground truth)."""
    depth_m = np.asarray(depth_m, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        disp = focal_baseline_px_m / depth_m
    disp[~np.isfinite(depth_m) | (depth_m <= 0)] = np.nan
    return disp.astype(np.float32)


def disparity_to_depth(disp_px, focal_baseline_px_m: float = FOCAL_BASELINE_PX_M["indoor_flying"]):
    """Depth in metres with the published epsilon; works on numpy arrays and torch tensors alike."""
    return focal_baseline_px_m / (disp_px + DEPTH_EPS)
