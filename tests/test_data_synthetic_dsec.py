"""The synthetic DSEC-layout recording: exact file layout and dtypes, DSEC's index and time-base rules,
disparity PNGs that match the scene geometry, and events that agree with them through the rectify maps."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filter of events.h5)
import numpy as np
import pytest
import yaml
from scipy.ndimage import gaussian_filter

from common.errors import UserError
from data_tools import make_synthetic
from data_tools.dataset import StereoEventDataset
from data_tools.prepare_dsec import prepare
from data_tools.synthetic_dsec import generate_dsec, sequence_scene

SEED = 5
SECONDS, EVAL_SECONDS = 0.4, 0.3
TRAIN = ["zurich_city_synthetic_a", "zurich_city_synthetic_b"]
VAL, EVAL, TEST = "zurich_city_synthetic_c", "zurich_city_synthetic_d", "zurich_city_synthetic_t"
H, W = 480, 640


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic_dsec")
    assert make_synthetic.main(["--layout", "dsec", "--out", str(root), "--seed", str(SEED), "--seconds", str(SECONDS),
                                "--eval-seconds", str(EVAL_SECONDS)]) == 0
    return root


@pytest.fixture(scope="module")
def manifest(recording) -> dict:
    return json.loads((recording / "manifest.json").read_text())


def _pngs(folder: Path) -> list[Path]:
    return sorted((folder / "disparity" / "event").glob("*.png"))


def _read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.dtype == np.uint16 and image.shape == (H, W), path
    return image


def test_layout_and_manifest(recording, manifest):
    assert manifest["kind"] == "synthetic_dsec" and manifest["version"] == 1
    assert manifest["split"] == {"train": TRAIN, "val": [VAL], "eval": [EVAL]} and manifest["test"] == [TEST]
    assert manifest["timestamps_dir"] == "test_disparity_timestamps"
    assert manifest["intrinsics"]["focal_baseline_px_m"] == pytest.approx(569.8 * 0.6)
    for name in [*TRAIN, VAL, EVAL, TEST]:
        folder = recording / ("test" if name == TEST else "train") / name
        for side in ("left", "right"):
            assert (folder / "events" / side / "events.h5").is_file()
            assert (folder / "events" / side / "rectify_map.h5").is_file()
        assert (folder / "calibration" / "cam_to_cam.yaml").is_file()
        assert (folder / "disparity").exists() == (name != TEST)
    assert sorted(p.name for p in (recording / "test_disparity_timestamps").iterdir()) == [f"{TEST}.csv"]
    assert not list(recording.rglob("*.tmp"))


def test_event_files_follow_dsec(recording, manifest):
    folder = recording / "train" / TRAIN[0]
    offsets, last_abs = {}, {}
    for side in ("left", "right"):
        with h5py.File(folder / "events" / side / "events.h5") as h5:
            x, y, t, p = (h5[f"events/{k}"][:] for k in "xytp")
            assert (x.dtype, y.dtype, t.dtype, p.dtype) == (np.uint16, np.uint16, np.uint32, np.uint8)
            assert "32001" in h5["events/t"]._filters and h5["events/t"].chunks is not None  # Blosc, chunked
            assert h5["t_offset"].shape == () and h5["t_offset"].dtype == np.int64
            offsets[side] = int(h5["t_offset"][()])
            ms_to_idx = h5["ms_to_idx"][:]
        assert ms_to_idx.dtype == np.uint64 and t.size > 10_000
        assert x.max() < W and y.max() < H and set(np.unique(p)) == {0, 1} and np.all(np.diff(t.astype(np.int64)) >= 0)
        idx = ms_to_idx.astype(np.int64)
        assert idx[0] == 0 and idx.size == int(t[-1]) // 1000 + 1
        inside = idx < t.size
        assert np.all(t[idx[inside]] >= np.flatnonzero(inside) * 1000)  # first event at or after the ms ...
        assert np.all(t[idx[1:] - 1] < np.arange(1, idx.size) * 1000)  # ... and every earlier one before it
        last_abs[side] = int(t[-1]) + offsets[side]
        if side == "right":
            assert int(t[0]) + offsets[side] >= offsets["right"]
    assert offsets["left"] > 4e10 and 0 < offsets["right"] - offsets["left"] < 1000
    end_abs = offsets["left"] + int(SECONDS * 1e6)  # the rig's last rendered frame, in absolute time
    assert end_abs - 1000 < last_abs["left"] <= end_abs and end_abs - 1000 < last_abs["right"] <= end_abs


def test_rectify_maps_are_mild_distortions(recording):
    ys, xs = np.mgrid[0:H, 0:W]
    maps = {}
    for side in ("left", "right"):
        with h5py.File(recording / "train" / TRAIN[0] / "events" / side / "rectify_map.h5") as h5:
            maps[side] = h5["rectify_map"][:]
        assert maps[side].shape == (H, W, 2) and maps[side].dtype == np.float32
        shift = np.hypot(maps[side][..., 0] - xs, maps[side][..., 1] - ys)
        assert 1.0 < shift.max() < 4.0 and shift[222, 336] < 0.01  # identity only at the principal point
    assert np.abs(maps["left"] - maps["right"]).max() > 1.0


def _reference_depth(scene, t_s: float, camera) -> np.ndarray:
    """Camera Z of the nearest patch along every rectified left ray, in float64, without the renderer."""
    ys, xs = np.mgrid[0:camera.height, 0:camera.width].astype(np.float64)
    rot, centre = scene.camera_pose(t_s, "left")
    rays = np.stack([(xs - camera.cx) / camera.focal, (ys - camera.cy) / camera.focal, np.ones_like(xs)], -1) @ rot.T
    best = np.full(xs.shape, np.inf)
    for patch in scene.patches:
        plane_d = float(patch.normal @ (patch.center - centre))
        if not patch.two_sided and plane_d >= 0:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = plane_d / (rays @ patch.normal)
            offset = centre + lam[..., None] * rays - patch.center
            hit = (lam > 0.05) & (np.abs(offset @ patch.u) <= patch.half_u) & (np.abs(offset @ patch.v) <= patch.half_v)
        best = np.where(hit & (lam < best), lam, best)
    return best


def test_disparity_pngs_match_the_scene(recording, manifest):
    folder = recording / "train" / TRAIN[0]
    pngs = _pngs(folder)
    stamps = np.loadtxt(folder / "disparity" / "timestamps.txt", dtype=np.int64)
    left_offset = manifest["t_offset_us"]["left"]
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(0, 9, 2)]  # 10 Hz, named by the 20 Hz index
    assert stamps.tolist() == [left_offset + 100_000 * k for k in range(len(pngs))]
    scene, _ = sequence_scene(TRAIN[0], SEED)
    depth = _reference_depth(scene, 0.1, scene.camera)  # 000002.png, the first map readers keep
    png = _read_png(pngs[1])
    disp = manifest["intrinsics"]["focal_baseline_px_m"] / depth
    known = png > 0
    assert np.all(~known | np.isfinite(depth)) and np.isinf(depth).mean() > 0.01  # sky is unknown
    assert 0.25 < 1 - known[np.isfinite(depth)].mean() < 0.35  # and about 30 % of the rest
    error = np.abs(png[known] / 256.0 - disp[known])
    assert np.count_nonzero(error > 1 / 256) <= 5, np.sort(error)[-10:]  # a patch edge may round either way
    assert 2.0 < disp[known].min() and disp[known].max() < 45.0


def test_manifest_records_the_largest_disparity(recording, manifest):
    written = max(_read_png(p).max() for name in [*TRAIN, VAL, EVAL] for p in _pngs(recording / "train" / name))
    assert manifest["max_disparity_px"] == written / 256.0 and manifest["max_disparity_px"] <= 45.0
    for name in [*TRAIN, VAL, EVAL]:
        count = len(_pngs(recording / "train" / name))
        assert count == manifest["sequences"][name]["num_disparity_maps"]
        assert count == len((recording / "train" / name / "disparity" / "timestamps.txt").read_text().split())


def _rectified_counts(folder: Path, side: str, t_end_abs: int, window_us: int = 50_000) -> np.ndarray:
    """Blurred count image of a camera's events in (t_end - window, t_end], rectified through its map."""
    with h5py.File(folder / "events" / side / "events.h5") as h5:
        t1 = t_end_abs - int(h5["t_offset"][()])
        t0 = t1 - window_us
        ms_to_idx = h5["ms_to_idx"][:].astype(np.int64)
        lo = ms_to_idx[t0 // 1000]
        hi = ms_to_idx[t1 // 1000 + 1] if t1 // 1000 + 1 < ms_to_idx.size else h5["events/t"].shape[0]
        x, y, t = (h5[f"events/{k}"][lo:hi].astype(np.int64) for k in "xyt")
    with h5py.File(folder / "events" / side / "rectify_map.h5") as h5:
        rect = h5["rectify_map"][:]
    keep = (t > t0) & (t <= t1)
    xr = np.floor(rect[y[keep], x[keep], 0] + 0.5).astype(np.int64)
    yr = np.floor(rect[y[keep], x[keep], 1] + 0.5).astype(np.int64)
    inside = (xr >= 0) & (xr < W) & (yr >= 0) & (yr < H)
    image = np.zeros((H, W))
    np.add.at(image, (yr[inside], xr[inside]), 1.0)
    return gaussian_filter(image, 1.0)


def _alignment_scores(left: np.ndarray, right: np.ndarray, disp: np.ndarray) -> dict[float, float]:
    """Correlation of the left counts with the right ones warped by the ground truth plus an offset."""
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    scores = {}
    for extra in (-3.0, -0.5, 0.0, 0.5, 3.0):  # the ground truth plus a wrong offset
        source_x = xs - disp.astype(np.float32) - extra
        warped = cv2.remap(right.astype(np.float32), source_x, ys, cv2.INTER_LINEAR)
        mask = (disp > 0) & (source_x >= 0)
        scores[extra] = float(np.corrcoef(left[mask], warped[mask])[0, 1])
    return scores


def test_events_agree_with_the_disparity(recording, manifest):
    """Right events shifted by the ground truth line up with the left ones, each in its own time base."""
    folder = recording / "train" / TRAIN[0]
    t_end = manifest["t_offset_us"]["left"] + 200_000  # 000004.png
    left, right = (_rectified_counts(folder, side, t_end) for side in ("left", "right"))
    scores = _alignment_scores(left, right, _read_png(folder / "disparity" / "event" / "000004.png") / 256.0)
    assert max(scores, key=scores.get) == 0.0 and scores[0.0] > 0.6, scores
    assert max(scores[-3.0], scores[3.0]) < scores[0.0] - 0.2, scores


def test_prepared_examples_carry_the_stereo_signal(recording, tmp_path):
    """Through prepare_dsec.py and the Dataset (reader, per-camera time base, rectification, voxels):
    the prepared right view warped by the prepared disparity lines up with the left view."""
    prepare(recording, out=tmp_path / "prepared")
    item = next(i for i in StereoEventDataset(tmp_path / "prepared", "train", num_bins=1, encoding="count")
                if i["file_index"] == 4 and i["sequence"] == TRAIN[0])
    left, right = (gaussian_filter(item[side][0].sum(0).numpy().astype(np.float64), 1.0) for side in ("left", "right"))
    scores = _alignment_scores(left, right, item["disp_px"].numpy())
    assert max(scores, key=scores.get) == 0.0 and scores[0.0] > 0.6, scores
    assert max(scores[-3.0], scores[3.0]) < scores[0.0] - 0.2, scores


def test_test_timestamps_csv(recording, manifest):
    path = recording / "test_disparity_timestamps" / f"{TEST}.csv"
    header, *rows = path.read_text().splitlines()
    assert header == "# timestamp_us, file_index"
    # DSEC's checker reads it with delimiter=", " (older numpy); numpy 2 takes one character, so split by
    # hand on exactly ", " as well, and let loadtxt read the same rows with ","
    assert [[int(v) for v in row.split(", ")] for row in rows] == [[int(v) for v in row.split(",")] for row in rows]
    table = np.loadtxt(path, dtype=np.int64, delimiter=",", comments="#")
    assert table.ndim == 2 and table.shape[1] == 2 and table.shape[0] == 3
    assert table[:, 1].tolist() == [2, 4, 6]
    assert table[:, 0].tolist() == [manifest["t_offset_us"]["left"] + 50_000 * i for i in (2, 4, 6)]


def test_calibration_gives_the_manifest_focal_baseline(recording, manifest):
    calib = yaml.safe_load((recording / "test" / TEST / "calibration" / "cam_to_cam.yaml").read_text())
    q = np.array(calib["disparity_to_depth"]["cams_03"])
    intrinsics = manifest["intrinsics"]
    assert q[2, 3] / q[3, 2] == pytest.approx(intrinsics["focal_baseline_px_m"], rel=1e-12)
    assert 1 / q[3, 2] == pytest.approx(intrinsics["baseline_m"]) and q[2, 3] == intrinsics["fx"]
    for cam in ("camRect0", "camRect3"):
        assert calib["intrinsics"][cam]["camera_matrix"] == [intrinsics[k] for k in ("fx", "fy", "cx", "cy")]
        assert calib["intrinsics"][cam]["resolution"] == [W, H]
    assert calib["intrinsics"]["cam0"]["distortion_model"] == "radtan"
    assert np.allclose(calib["extrinsics"]["R_rect0"], np.eye(3))


def test_bad_options_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="--radial-k"):
        generate_dsec(tmp_path, radial_k=0.05)
    with pytest.raises(UserError, match="--render-hz"):
        generate_dsec(tmp_path, render_hz=75)
    with pytest.raises(UserError, match="--sequences"):
        generate_dsec(tmp_path, train_sequences=0)
    assert not any(tmp_path.iterdir())
