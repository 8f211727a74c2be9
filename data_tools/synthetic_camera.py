"""The pinhole model of a synthetic rectified stereo rig, and the mild lens distortion of its raw cameras.

One ``Camera`` per layout (MVSEC 346x260, DSEC 640x480) drives the renderer, the rays of the raw and
rectified pixels and the rectification maps, so the scene code never hard-codes a sensor. The MVSEC
numbers are Python floats taken from ``data_tools.constants`` and every expression keeps its original
operation order: the default MVSEC recording stays bit-identical (``tests/test_weights.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.errors import UserError
from data_tools.constants import BASELINE_M, CX_PX, CY_PX, FOCAL_PX, SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX

RIGHT_DISTORTION_RATIO = -0.7  # the right lens distorts the other way, a little less
BLOCK_MARGIN_PX = 4  # the renderer's slack around a patch's projected box (synthetic_scene._block)


@dataclass(frozen=True)
class Camera:
    """Rectified intrinsics shared by both cameras (pixels), sensor size and baseline (m)."""

    focal: float
    cx: float
    cy: float
    height: int
    width: int
    baseline: float

    @property
    def focal_baseline(self) -> float:
        return self.focal * self.baseline


MVSEC_CAMERA = Camera(FOCAL_PX, CX_PX, CY_PX, SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX, BASELINE_M)


def rectified_rays(camera: Camera = MVSEC_CAMERA) -> tuple[np.ndarray, np.ndarray]:
    """Normalised ray coordinates (x, y) of every rectified pixel, float32 (H, W)."""
    ys, xs = np.mgrid[0:camera.height, 0:camera.width].astype(np.float32)
    return (xs - camera.cx) / camera.focal, (ys - camera.cy) / camera.focal


def distortion_maps(side: str, radial_k: float, camera: Camera = MVSEC_CAMERA) -> tuple[np.ndarray, np.ndarray]:
    """x/y maps (H, W): rectified coordinate of each raw pixel; identity for radial_k = 0.

    With radial_k != 0 the rounding of SPEC §2 moves events by up to 0.5 px with a phase that
    drifts slowly across the image, differently in each camera: the same sub-pixel bias real
    recordings carry, which caps how well any matcher can agree with the ground truth."""
    ys, xs = np.mgrid[0:camera.height, 0:camera.width].astype(np.float64)
    r2 = ((xs - camera.cx) ** 2 + (ys - camera.cy) ** 2) / camera.focal**2
    scale = 1.0 + side_radial_k(side, radial_k) * r2
    x_map, y_map = camera.cx + (xs - camera.cx) * scale, camera.cy + (ys - camera.cy) * scale
    shift = float(np.hypot(x_map - xs, y_map - ys).max())
    if shift >= BLOCK_MARGIN_PX:
        raise UserError(f"--radial-k {radial_k}: moves raw pixels by up to {shift:.1f} px, expected under "
                        f"{BLOCK_MARGIN_PX} px (the renderer's margin); use a smaller |k|")
    return x_map, y_map


def side_radial_k(side: str, radial_k: float) -> float:
    """The radial coefficient of one raw camera (the right one bends the other way)."""
    return radial_k * (RIGHT_DISTORTION_RATIO if side == "right" else 1.0)


def raw_rays(side: str, radial_k: float, camera: Camera = MVSEC_CAMERA) -> tuple[np.ndarray, np.ndarray]:
    """Normalised rays of the raw pixels: through the rectified coordinates the maps give."""
    x_map, y_map = distortion_maps(side, radial_k, camera)
    return ((x_map - camera.cx) / camera.focal).astype(np.float32), ((y_map - camera.cy) / camera.focal).astype(np.float32)
