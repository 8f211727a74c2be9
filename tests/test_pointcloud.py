"""Back-projection, PLY output and rendering of point clouds (SPEC §10)."""

from __future__ import annotations

import cv2
import numpy as np
import open3d as o3d
import pytest
from eval_toys import make_checkpoint, make_recording

from common.errors import UserError
from data_tools.constants import CX_PX, CY_PX, FOCAL_BASELINE_PX_M, FOCAL_PX, disparity_to_depth
from eval import pointcloud
from eval.cloud import back_project, colours, write_ply

FB = FOCAL_BASELINE_PX_M["indoor_flying"]


def test_fronto_parallel_plane_lands_at_its_depth():
    disparity_px = 10.0
    depth = disparity_to_depth(np.full((260, 346), disparity_px), FB)
    mask = np.zeros((260, 346), bool)
    mask[100:110, 50:60] = True
    points = back_project(depth, mask, FOCAL_PX, CX_PX, CY_PX)
    z = FB / (disparity_px + 1e-7)
    assert points.shape == (100, 3)
    np.testing.assert_allclose(points[:, 2], z, rtol=1e-9)
    # the first masked pixel (row 100, column 50): X = (u - cx) Z / f, Y = (v - cy) Z / f
    np.testing.assert_allclose(points[0], [(50 - CX_PX) * z / FOCAL_PX, (100 - CY_PX) * z / FOCAL_PX, z], rtol=1e-9)
    # the principal point itself lies on the optical axis
    on_axis = back_project(np.full((1, 1), z), np.ones((1, 1), bool), FOCAL_PX, 0.0, 0.0)
    np.testing.assert_allclose(on_axis, [[0.0, 0.0, z]], rtol=1e-9)


def test_ply_round_trip(tmp_path):
    points = np.array([[0.0, 0.0, 1.0], [1.0, 2.0, 3.0]])
    rgb = colours(np.array([1.0, 3.0]), 1.0, 3.0, "turbo_r")
    write_ply(tmp_path / "c.ply", points, rgb)
    cloud = o3d.io.read_point_cloud(str(tmp_path / "c.ply"))
    np.testing.assert_allclose(np.asarray(cloud.points), points)
    np.testing.assert_allclose(np.asarray(cloud.colors), rgb, atol=1 / 255)
    assert not list(tmp_path.glob(".*"))  # no temporary left behind


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    root = tmp_path_factory.mktemp("pointcloud")
    _, prepared = make_recording(root)
    return prepared, make_checkpoint(root / "snn.pt")


def test_cli_writes_clouds_and_pictures(recording, tmp_path, capsys):
    prepared, ckpt = recording
    out = tmp_path / "pc"
    assert pointcloud.main(["--checkpoint", str(ckpt), "--data", str(prepared), "--index", "1", "--out", str(out),
                            "--device", "cpu", "--show"]) == 0
    text = capsys.readouterr().out
    assert "no display found" in text or "DISPLAY" in text
    [gt_ply] = out.glob("*_gt.ply")
    [pred_ply] = out.glob("*_pred.ply")
    gt = np.asarray(o3d.io.read_point_cloud(str(gt_ply)).points)
    pred = np.asarray(o3d.io.read_point_cloud(str(pred_ply)).points)
    assert len(gt) == len(pred) > 1000  # --pixels valid: the same pixels in both clouds
    assert np.all(gt[:, 2] > 0.3) and np.all(gt[:, 2] < 20)
    image = cv2.imread(str(next(out.glob("*_pred_gt.png"))))
    assert image is not None and image.shape == (480, 1280, 3)


def test_cli_falls_back_to_matplotlib(recording, tmp_path, capsys, monkeypatch):
    prepared, ckpt = recording
    monkeypatch.setattr(pointcloud, "render_png", lambda *a, **k: (False, "no renderer in this test"))
    out = tmp_path / "pc"
    pointcloud.main(["--checkpoint", str(ckpt), "--data", str(prepared), "--index", "0", "--out", str(out),
                     "--device", "cpu", "--color", "events"])
    assert "drew a matplotlib 3D scatter instead" in capsys.readouterr().out
    image = cv2.imread(str(next(out.glob("*_pred.png"))))
    assert image is not None and image.shape == (480, 640, 3)


def test_cli_bad_index_and_missing_checkpoint(recording, tmp_path):
    prepared, ckpt = recording
    with pytest.raises(UserError, match="--index 999"):
        pointcloud.main(["--checkpoint", str(ckpt), "--data", str(prepared), "--index", "999", "--device", "cpu"])
    with pytest.raises(UserError, match="checkpoint not found"):
        pointcloud.main(["--checkpoint", str(tmp_path / "none.pt"), "--data", str(prepared), "--device", "cpu"])
