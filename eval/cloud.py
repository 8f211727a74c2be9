"""Point clouds from disparity (SPEC §10): back-projection, colours, PLY, a PNG rendered without a display.

Rendering runs open3d in a child process with a timeout (``eval/cloud_render.py``), because a GPU or
Vulkan driver can hang or crash a headless process; where open3d cannot render, a matplotlib 3D
scatter is drawn instead and the caller is told so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np

from common.atomic import atomic_path

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RENDER_TIMEOUT_S = 120
MAX_SCATTER_POINTS = 20_000


def back_project(depth_m: np.ndarray, mask: np.ndarray, focal_px: float, cx_px: float, cy_px: float) -> np.ndarray:
    """(N, 3) camera-frame points (X right, Y down, Z forward; metres) of the masked pixels, row-major."""
    rows, cols = np.nonzero(mask)
    z = depth_m[rows, cols]
    return np.stack([(cols - cx_px) * z / focal_px, (rows - cy_px) * z / focal_px, z], axis=1)


def camera_pose(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eye and look-at point: above, left of and behind the stereo camera, looking at the cloud's centre."""
    centre = np.median(points, axis=0)
    spread = float(np.percentile(points[:, 2], 95) - np.percentile(points[:, 2], 5))
    eye = centre + np.array([-0.45, -0.55, -1.0]) * 1.6 * max(spread, float(centre[2]), 0.5)
    return eye, centre


def colours(values: np.ndarray, vmin: float, vmax: float, cmap: str) -> np.ndarray:
    """(N, 3) RGB in [0, 1] of values on a fixed scale (the same for prediction and ground truth)."""
    scaled = np.clip((values - vmin) / max(vmax - vmin, 1e-9), 0.0, 1.0)
    return plt.get_cmap(cmap)(scaled)[:, :3]


def write_ply(path: Path, points: np.ndarray, rgb: np.ndarray) -> None:
    """Binary PLY through open3d, written atomically."""
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    cloud.colors = o3d.utility.Vector3dVector(rgb.astype(np.float64))
    with atomic_path(path) as tmp:
        ply_tmp = tmp.with_suffix(".ply")  # open3d picks the writer from the extension
        if not o3d.io.write_point_cloud(str(ply_tmp), cloud):
            raise OSError(f"open3d could not write {path}")
        os.replace(ply_tmp, tmp)


def scatter_png(path: Path, points: np.ndarray, rgb: np.ndarray, title: str, size_px: tuple[int, int],
                limits: np.ndarray | None = None) -> None:
    """The matplotlib fallback: a subsampled 3D scatter seen from above and behind the camera.

    ``limits`` (2, 3) = min and max corner of the axes; give two clouds the same ones to compare them.
    """
    step = max(1, len(points) // MAX_SCATTER_POINTS)
    pts, col = points[::step], rgb[::step]
    dpi = 100
    fig = plt.figure(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi)
    ax = fig.add_subplot(projection="3d")
    ax.scatter(pts[:, 0], pts[:, 2], -pts[:, 1], c=col, s=0.5, depthshade=False)
    ax.set_xlabel("X (m)")
    ax.set_ylabel("Z (m)")
    ax.set_zlabel("-Y (m)")
    low, high = (pts.min(0), pts.max(0)) if limits is None else limits
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[2], high[2])
    ax.set_zlim(-high[1], -low[1])
    ax.set_box_aspect((high - low)[[0, 2, 1]] + 1e-3)
    ax.view_init(elev=20, azim=-70)
    ax.set_title(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def render_png(ply_path: Path, png_path: Path, size_px: tuple[int, int] = (640, 480),
               pose: tuple[np.ndarray, np.ndarray] | None = None, timeout_s: float = RENDER_TIMEOUT_S) -> tuple[bool, str]:
    """Render a PLY with open3d in a child process; (success, renderer name or the reason it failed).

    ``pose`` = (eye, look-at) in camera coordinates; give two clouds the same one to compare them.
    """
    tmp = png_path.with_name(f".{png_path.stem}.rendering.png")  # open3d picks the format by extension
    command = [sys.executable, "-m", "eval.cloud_render", str(ply_path), str(tmp), str(size_px[0]), str(size_px[1])]
    if pose is not None:
        command += [repr(float(v)) for v in np.concatenate(pose)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        return False, f"open3d did not finish within {timeout_s:.0f} s"
    if result.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        lines = (result.stderr or result.stdout).strip().splitlines()
        return False, lines[-1] if lines else f"open3d renderer exited with code {result.returncode}"
    os.replace(tmp, png_path)
    return True, result.stdout.strip().splitlines()[-1]


def display_available() -> bool:
    """A window can be opened: always on macOS/Windows, with DISPLAY or WAYLAND_DISPLAY elsewhere."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
