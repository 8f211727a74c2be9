"""Reading and preparing: rectification, windows, event mask, disparity, splits, the prepared files."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from test_data_fixtures import (
    T0_S,
    H,
    W,
    identity_maps,
    random_events,
    simple_recording,
    write_manifest,
    write_maps,
    write_sequence,
)

from common.errors import UserError
from data_tools.constants import FOCAL_BASELINE_PX_M, depth_to_disparity, disparity_to_depth
from data_tools.dataset import StereoEventDataset
from data_tools.events import Events, event_mask
from data_tools.mvsec import Rectifier, find_sequence_files
from data_tools.prepare_mvsec import prepare
from data_tools.prepared import read_events
from data_tools.recording import Recording
from data_tools.splits import real_frames, real_split, shuffle_eval, split_eval


def test_rectification_with_known_map():
    xs, ys = identity_maps()
    x_map = xs * 0.5 + 10.4  # scale and shift
    y_map = ys + 0.6
    y_map[0, 5] = -0.6  # lands outside: dropped
    rect = Rectifier(x_map, y_map)
    keep, x, y = rect(np.array([0.0, 3.0, 5.0, 100.0, 345.0, 400.0]), np.array([0.0, 2.0, 0.0, 100.0, 259.0, 0.0]))
    # (5, 0) maps above the frame, (345, 259) rounds to row 260 (outside), (400, 0) is off the sensor
    np.testing.assert_array_equal(np.arange(6)[keep], [0, 1, 3])
    np.testing.assert_array_equal(x, [10, 12, 60])  # round(10.4), round(11.9), round(60.4)
    np.testing.assert_array_equal(y, [1, 3, 101])  # round(0.6), round(2.6), round(100.6)


def test_rectification_drops_rows_rounded_past_the_edge():
    xs, ys = identity_maps()
    rect = Rectifier(xs + 0.5, ys)  # half-up rounding moves every pixel right; the last column leaves
    keep, x, _ = rect(np.array([0.0, 344.0, 345.0]), np.array([0.0, 0.0, 0.0]))
    np.testing.assert_array_equal(np.arange(3)[keep], [0, 1])
    np.testing.assert_array_equal(x, [1, 345])


def _recording_with_events(tmp_path, left_rows, right_rows, frames=3, maps=None):
    depth = np.full((frames, H, W), 2.0, np.float32)
    write_sequence(tmp_path, "hand1", np.asarray(left_rows, float), np.asarray(right_rows, float), depth,
                   T0_S + 0.05 * np.arange(frames))
    write_sequence(tmp_path, "hand2", np.asarray(left_rows, float), np.asarray(right_rows, float), depth,
                   T0_S + 0.05 * np.arange(frames))
    write_maps(tmp_path, "hand", maps)
    write_manifest(tmp_path, "hand", ["hand1", "hand2"])


def test_window_edges_exact_on_boundaries(tmp_path):
    # depth frames at T0 + 0, 50, 100 ms; events exactly on window boundaries
    times_us = [0, 1, 50_000, 50_001, 99_999, 100_000]
    rows = [[i, 0, T0_S + t * 1e-6, 1] for i, t in enumerate(times_us)]
    _recording_with_events(tmp_path, rows, rows)
    with Recording(find_sequence_files(tmp_path, "hand1")) as rec:
        assert rec.t0_s == T0_S
        w1 = rec.cameras["left"].window(0, 50_000)
        w2 = rec.cameras["left"].window(50_000, 100_000)
    np.testing.assert_array_equal(w1.t_us, [1, 50_000])
    np.testing.assert_array_equal(w2.t_us, [50_001, 99_999, 100_000])
    np.testing.assert_array_equal(w2.x, [3, 4, 5])


def test_event_mask_last_events_reach_before_the_window():
    ev = Events(np.array([0, 1, 2, 3], np.uint16), np.array([0, 0, 1, 1], np.uint16),
                np.array([1, 2, 3, 4], np.int64), np.array([1, -1, 1, 1], np.int8))
    mask = event_mask(ev, 3, 2, 4)
    expect = np.zeros((2, 4), bool)
    expect[0, 1] = expect[1, 2] = expect[1, 3] = True  # the last 3 events, not the first
    np.testing.assert_array_equal(mask, expect)
    assert event_mask(ev, 100, 2, 4).sum() == 4


def test_depth_disparity_with_mvsec_constants():
    f_b = FOCAL_BASELINE_PX_M["indoor_flying"]
    assert f_b == pytest.approx(199.6530 * 0.09988, rel=1e-4)
    depth = np.array([1.0, 19.941772 / 37, 0.0, np.nan, np.inf, -1.0])
    disp = depth_to_disparity(depth)
    np.testing.assert_allclose(disp[:2], [19.941772, 37.0], rtol=1e-6)
    assert np.isnan(disp[2:]).all()
    assert float(disparity_to_depth(np.float64(19.941772))) == pytest.approx(1.0, rel=1e-6)


def test_split_membership_filters_and_shuffle():
    assert real_split(1) == (["indoor_flying2", "indoor_flying3"], "indoor_flying1")
    assert real_split(3) == (["indoor_flying1", "indoor_flying2"], "indoor_flying3")
    frames = real_frames("indoor_flying1", "eval", 5000)
    assert frames[0] == 140 and frames[-1] == 1200 and len(frames) == 1061  # inclusive
    train = real_frames("indoor_flying3", "train", 5000)
    assert train[0] == 125 and train[-1] == 1814
    assert real_frames("indoor_flying2", "eval", 300)[-1] == 299  # clipped to the recording
    items = list(range(140, 1201))
    expected = list(items)
    random.seed(0)
    random.shuffle(expected)
    shuffled = shuffle_eval(items, 0)
    assert shuffled == expected
    val, test = split_eval(shuffled, 200)
    assert len(val) == 200 and val == expected[:200] and test == expected[200:]


def test_prepare_end_to_end_and_no_op(tmp_path, capsys):
    xs, ys = identity_maps()
    names = simple_recording(tmp_path / "raw", frames=5, depth_value=0.0,
                             maps={"left_x": xs + 1.0, "left_y": ys, "right_x": xs, "right_y": ys})
    out = tmp_path / "prepared"
    manifest = prepare(tmp_path / "raw", out=out)
    assert manifest["sequences"][names[0]]["frame_index"] == [1, 2, 3, 4]  # first window dropped
    assert len(manifest["splits"]["val"]) == 2 and len(manifest["splits"]["test"]) == 2
    assert sorted(manifest["splits"]["val"] + manifest["splits"]["test"]) == [[names[0], r] for r in range(4)]
    assert len(manifest["splits"]["train"]) == 4
    import h5py
    with h5py.File(tmp_path / "raw" / f"{names[0]}_data.hdf5") as h5:
        raw = h5["davis/left/events"][:]
    with h5py.File(out / f"{names[0]}.hdf5") as h5:
        ev = read_events(h5["left"], 1)  # frame 2: (50 ms, 100 ms]
        assert np.isnan(h5["disp_px"][0]).all()  # depth 0 -> unknown
    t_us = np.rint((raw[:, 2] - T0_S) * 1e6).astype(np.int64)
    sel = (t_us > 50_000) & (t_us <= 100_000) & (raw[:, 0] + 1 < W)
    np.testing.assert_array_equal(ev.t_us, t_us[sel])
    np.testing.assert_array_equal(ev.x, raw[sel, 0] + 1)  # the left map shifts by one pixel
    ds = StereoEventDataset(out, "test")
    item = ds[0]
    assert not item["valid"].any() and float(item["disp_px"].abs().sum()) == 0.0
    capsys.readouterr()
    mtime = (out / "manifest.json").stat().st_mtime_ns
    prepare(tmp_path / "raw", out=out)
    assert "up to date" in capsys.readouterr().out and (out / "manifest.json").stat().st_mtime_ns == mtime
    prepare(tmp_path / "raw", out=out, num_bins=3, encoding="count")  # only the manifest changes
    assert json.loads((out / "manifest.json").read_text())["num_bins"] == 3
    assert StereoEventDataset(out, "train").in_channels == 2 and StereoEventDataset(out, "train").num_bins == 3
    prepare(tmp_path / "raw", out=out, force=True)
    assert json.loads((out / "manifest.json").read_text())["num_bins"] == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_windows_without_events_give_empty_tensors(tmp_path):
    _recording_with_events(tmp_path / "raw", [[1, 1, T0_S + 0.001, 1]], [[1, 1, T0_S + 0.001, -1]], frames=3)
    prepare(tmp_path / "raw", out=tmp_path / "prep")
    ds = StereoEventDataset(tmp_path / "prep", "train")
    item = ds[1]
    assert item["left"].shape == (5, 2, H, W) and float(item["left"].sum()) == 0.0
    assert item["event_mask"].sum() == 1  # the one old event still marks its pixel
    assert item["valid"].all() and np.allclose(item["disp_px"].numpy(), 19.941772 / 2.0)


def test_augmentations_flip_rows_or_swap_polarity_of_training_crops_only(tmp_path):
    rng = np.random.default_rng(3)
    frames = 4
    rows = np.linspace(2.0, 8.0, H, dtype=np.float32)[None, :, None]  # depth varies with the row
    depth = np.broadcast_to(rows, (frames, H, W)).copy()
    names = ["aug1", "aug2"]
    for name in names:
        left, right = (random_events(rng, 4000, 0.05 * (frames - 1)) for _ in range(2))
        write_sequence(tmp_path / "raw", name, left, right, depth, T0_S + 0.05 * np.arange(frames))
    write_maps(tmp_path / "raw", "aug")
    write_manifest(tmp_path / "raw", "aug", names)
    prepare(tmp_path / "raw", out=tmp_path / "prep")
    full = (H, W)  # a full-size "crop": its origin is always (0, 0), so items line up with the plain ones
    plain = StereoEventDataset(tmp_path / "prep", "train", crop=full)
    flipped = StereoEventDataset(tmp_path / "prep", "train", crop=full, augment=("vflip",))
    swapped = StereoEventDataset(tmp_path / "prep", "train", crop=full, augment=("polarity",))
    seen = {"vflip": set(), "polarity": set()}
    for i in range(len(plain)):
        a, b, c = plain[i], flipped[i], swapped[i]
        assert a["left"][:, 0].sum() != a["left"][:, 1].sum()  # ON and OFF differ, so a swap is visible
        if torch.equal(b["left"], a["left"].flip(-2)):
            seen["vflip"].add(True)
            for key in ("right", "disp_px", "valid", "event_mask"):
                assert torch.equal(b[key], a[key].flip(-2)), key
            assert b["disp_px"][0, 0] == a["disp_px"][-1, 0]  # the far top row is now at the bottom
        else:
            seen["vflip"].add(False)
            assert all(torch.equal(b[k], a[k]) for k in ("left", "right", "disp_px"))
        swap = torch.equal(c["left"], a["left"].flip(-3)) and torch.equal(c["right"], a["right"].flip(-3))
        seen["polarity"].add(swap)
        assert swap or torch.equal(c["left"], a["left"])
        assert torch.equal(c["disp_px"], a["disp_px"])
    assert seen == {"vflip": {True, False}, "polarity": {True, False}}  # each applied to some examples only
    with pytest.raises(UserError, match="augmentation hflip: expected any of vflip, polarity"):
        StereoEventDataset(tmp_path / "prep", "train", crop=full, augment=("hflip",))
    with pytest.raises(UserError, match="training crops only"):
        StereoEventDataset(tmp_path / "prep", "val", augment=("vflip",))


def test_teacher_views_are_the_same_crop_and_augmentation_at_the_teachers_input_format(tmp_path):
    rng = np.random.default_rng(4)
    frames = 4
    depth = np.full((frames, H, W), 3.0, np.float32)
    for name in ("kd1", "kd2"):
        left, right = (random_events(rng, 4000, 0.05 * (frames - 1)) for _ in range(2))
        write_sequence(tmp_path / "raw", name, left, right, depth, T0_S + 0.05 * np.arange(frames))
    write_maps(tmp_path / "raw", "kd")
    write_manifest(tmp_path / "raw", "kd", ["kd1", "kd2"])
    prepare(tmp_path / "raw", out=tmp_path / "prep")
    crop, augment = (H // 2, W // 2), ("vflip", "polarity")
    student = StereoEventDataset(tmp_path / "prep", "train", num_bins=2, crop=crop, augment=augment, seed=7,
                                 teacher_input=(5, "count"))
    alone = StereoEventDataset(tmp_path / "prep", "train", num_bins=2, crop=crop, augment=augment, seed=7)
    at_teacher = StereoEventDataset(tmp_path / "prep", "train", num_bins=5, encoding="count", crop=crop,
                                    augment=augment, seed=7)
    for i in range(len(student)):
        a, b, c = student[i], alone[i], at_teacher[i]
        assert a["left"].shape[0] == 2 and a["teacher_left"].shape[0] == 5
        assert a["teacher_left"].sum() > 0
        for side in ("left", "right"):
            assert torch.equal(a[side], b[side])  # the student's own views are unchanged
            assert torch.equal(a[f"teacher_{side}"], c[side])  # same events, crop and flips, teacher's format
        assert torch.equal(a["disp_px"], c["disp_px"])
    assert "teacher_left" not in alone[0]
