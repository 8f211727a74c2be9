"""Child process of ``eval.cloud.render_png``: render a PLY to PNG with open3d, without a display.

Tries open3d's OffscreenRenderer (Filament; Vulkan or EGL), then the legacy Visualizer with a
hidden window (Mesa EGL/GLX). Prints the renderer used; exits 1 with the reason when both fail.
Run as ``python -m eval.cloud_render CLOUD.ply OUT.png WIDTH HEIGHT [EYE_XYZ CENTRE_XYZ]``.
"""

from __future__ import annotations

import sys

import numpy as np
import open3d as o3d

from eval.cloud import camera_pose

FOV_DEG = 55.0


def offscreen(cloud: o3d.geometry.PointCloud, path: str, width: int, height: int, eye: np.ndarray,
              centre: np.ndarray) -> None:
    renderer = o3d.visualization.rendering.OffscreenRenderer(width, height)
    material = o3d.visualization.rendering.MaterialRecord()
    material.shader = "defaultUnlit"
    material.point_size = 2.0
    renderer.scene.add_geometry("cloud", cloud, material)
    renderer.scene.set_background([1.0, 1.0, 1.0, 1.0])
    renderer.setup_camera(FOV_DEG, centre, eye, [0.0, -1.0, 0.0])
    # setup_camera fits near/far to this cloud alone; a shared viewpoint (from another cloud) may lie
    # farther away, so the far plane must reach every point from the eye
    far = 1.5 * float(np.linalg.norm(np.asarray(cloud.points) - eye, axis=1).max()) + 1.0
    renderer.scene.camera.set_projection(FOV_DEG, width / height, 0.01, far,
                                         o3d.visualization.rendering.Camera.FovType.Vertical)
    if not o3d.io.write_image(path, renderer.render_to_image()):
        raise OSError(f"could not write {path}")


def legacy_hidden_window(cloud: o3d.geometry.PointCloud, path: str, width: int, height: int, eye: np.ndarray,
                         centre: np.ndarray) -> None:
    vis = o3d.visualization.Visualizer()
    if not vis.create_window(visible=False, width=width, height=height):
        raise RuntimeError("legacy Visualizer could not create a hidden window")
    try:
        vis.add_geometry(cloud)
        control = vis.get_view_control()
        control.set_lookat(centre)
        control.set_front((eye - centre) / np.linalg.norm(eye - centre))
        control.set_up([0.0, -1.0, 0.0])
        vis.poll_events()
        vis.update_renderer()
        if not vis.capture_screen_image(path, do_render=True):
            raise OSError(f"could not write {path}")
    finally:
        vis.destroy_window()


def main() -> int:
    ply, png, width, height = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    cloud = o3d.io.read_point_cloud(ply)
    if cloud.is_empty():
        print(f"{ply}: empty point cloud", file=sys.stderr)
        return 1
    if len(sys.argv) == 11:
        eye, centre = np.array(sys.argv[5:8], float), np.array(sys.argv[8:11], float)
    else:
        eye, centre = camera_pose(np.asarray(cloud.points))
    reasons = []
    for name, render in (("open3d OffscreenRenderer", offscreen), ("open3d legacy Visualizer (hidden window)", legacy_hidden_window)):
        try:
            render(cloud, png, width, height, eye, centre)
            print(name)
            return 0
        except Exception as err:  # noqa: BLE001 - any renderer failure means: try the next one
            reasons.append(f"{name}: {err}")
    print("; ".join(reasons), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
