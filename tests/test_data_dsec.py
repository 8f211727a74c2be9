"""DSEC reading and preparation on hand-made sequences with known events, maps and disparities."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import dsec_fixtures as fx
import h5py
import numpy as np
import pytest

from common.errors import UserError
from data_tools.dataset import StereoEventDataset
from data_tools.dsec import DsecEventFile, read_calibration, read_disparity_png
from data_tools.prepare_dsec import prepare
from data_tools.prepared import file_indices, read_events

REPO = Path(__file__).resolve().parent.parent
SPLITS = {"val": ["zurich_city_02_a"], "evaluate": ["thun_00_a"]}


@pytest.fixture(scope="module")
def download(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsec")
    return root, fx.write_download(root)


@pytest.fixture(scope="module")
def prepared(download):
    root, written = download
    out = root.parent / f"{root.name}_prepared"
    return out, prepare(root, out=out, **SPLITS), written


def expected_window(events, t_end_abs_us: int, window_us: int = 50_000):
    """Raw events with t_end - window < t <= t_end (the prepared format's convention)."""
    x, y, t, p = events
    keep = (t > t_end_abs_us - window_us) & (t <= t_end_abs_us)
    return x[keep], y[keep], t[keep], np.where(p[keep] > 0, 1, -1)


def test_windows_use_each_cameras_own_time_base_and_every_map_but_the_first(prepared):
    out, manifest, written = prepared
    seq = "zurich_city_01_a"
    truth = written["train"][seq]
    entry = manifest["sequences"][seq]
    assert entry["num_examples"] == 3 and entry["file_index"] == [2, 4, 6]  # 000000.png is dropped
    assert entry["t0_us"] == fx.T_OFFSET_US["left"]
    with h5py.File(out / entry["file"]) as h5:
        assert file_indices(h5).tolist() == [2, 4, 6]
        for row, stamp in enumerate(truth["stamps"][1:]):
            assert int(h5["t_us"][row]) == stamp - fx.T_OFFSET_US["left"]
            for side in ("left", "right"):
                x, y, t, p = expected_window(truth["events"][side], stamp)
                got = read_events(h5[side], row)
                assert len(got) == x.size > 0
                np.testing.assert_array_equal(got.x, x)  # identity rectify maps
                np.testing.assert_array_equal(got.y, y)
                np.testing.assert_array_equal(got.t_us, t - fx.T_OFFSET_US["left"])
                np.testing.assert_array_equal(got.p, p)
            mask = np.zeros((fx.H, fx.W), bool)
            left = expected_window(truth["events"]["left"], stamp)
            mask[left[1], left[0]] = True
            np.testing.assert_array_equal(h5["event_mask"][row], mask)


def test_disparity_png_scaling_and_unknown_pixels(prepared, tmp_path):
    out, manifest, _ = prepared
    ds = StereoEventDataset(out, "train", max_disparity_px=192)
    item = ds[0]
    assert item["disp_px"][fx.H - 1, 0].item() == 10.0 and not item["valid"][0, 0]
    assert item["valid"][fx.H // 2:].all() and not item["valid"][: fx.H // 2].any()
    png = tmp_path / "d.png"
    cv2.imwrite(str(png), np.array([[0, 1, 256 * 37 + 128]] * 480 + [[0, 0, 0]] * 0, dtype=np.uint16).repeat(214, 1)[:, :640])
    disp = read_disparity_png(png)
    assert np.isnan(disp[0, 0]) and disp[0, 214] == pytest.approx(1 / 256) and disp[0, 428] == 37.5


def test_splits_manifest_and_benchmark_rows(prepared):
    out, manifest, written = prepared
    assert manifest["dataset"] == "dsec" and manifest["version"] == 2 and manifest["event_mask_rule"] == "window"
    assert (manifest["height"], manifest["width"]) == (480, 640)
    assert manifest["focal_baseline_px_m"] == pytest.approx(fx.FX * fx.BASELINE_M)
    assert manifest["intrinsics"] == {"f": fx.FX, "fy": fx.FX, "cx": fx.CX, "cy": fx.CY}
    roles = {seq: e["role"] for seq, e in manifest["sequences"].items()}
    assert roles == {"zurich_city_01_a": "train", "zurich_city_02_a": "val", "thun_00_a": "eval",
                     "zurich_city_13_a": "benchmark"}
    assert {s for s, _ in manifest["splits"]["test"]} == {"thun_00_a"}
    assert manifest["disparity_range_px"] == [10.0, 12.0] and manifest["max_disparity_in_data_px"] == 12
    bench = StereoEventDataset(out, "benchmark")
    table = written["test"]["zurich_city_13_a"]
    assert [bench[i]["file_index"] for i in range(len(bench))] == [i for _, i in table]
    assert not bench[0]["valid"].any()


def test_rerun_is_a_no_op_and_force_rebuilds(download, prepared, capsys):
    root, _ = download
    out, manifest, _ = prepared
    stamp = (out / "manifest.json").stat().st_mtime_ns
    again = prepare(root, out=out, **SPLITS)
    assert again["sequences"] == manifest["sequences"] and (out / "manifest.json").stat().st_mtime_ns == stamp
    assert "up to date" in capsys.readouterr().out


def test_rectify_map_rounds_and_drops_what_leaves_the_sensor(tmp_path):
    shifted = fx.identity_map()
    shifted[..., 0] += 2.4  # +2 after rounding; the last two columns land off the sensor
    shifted[..., 1] -= 0.6  # -1 after rounding; row 0 lands off the sensor
    root = tmp_path / "dsec"
    truth = fx.write_train_sequence(root / "train" / "zurich_city_01_a", rect_maps={"left": shifted})
    fx.write_train_sequence(root / "train" / "zurich_city_02_a", seed=1)
    fx.write_train_sequence(root / "train" / "thun_00_a", seed=2)
    out = prepare(root, out=tmp_path / "prep", **SPLITS)
    with h5py.File(tmp_path / "prep" / out["sequences"]["zurich_city_01_a"]["file"]) as h5:
        x, y, _, _ = expected_window(truth["events"]["left"], truth["stamps"][1])
        inside = (x + 2 < fx.W) & (y - 1 >= 0)
        got = read_events(h5["left"], 0)
        np.testing.assert_array_equal(got.x, x[inside] + 2)
        np.testing.assert_array_equal(got.y, y[inside] - 1)


def test_files_without_ms_to_idx_and_t_offset_give_the_same_windows(tmp_path, capsys):
    stamps = np.arange(0, 500_000, 7, dtype=np.int64) + 1_000
    rng = np.random.default_rng(3)
    args = (rng.integers(0, fx.W, stamps.size), rng.integers(0, fx.H, stamps.size), stamps,
            rng.integers(0, 2, stamps.size))
    fx.write_events(tmp_path / "with.h5", *args, t_offset_us=0)
    fx.write_events(tmp_path / "without.h5", *args, t_offset_us=None, with_ms_to_idx=False)
    with_index, without = DsecEventFile(tmp_path / "with.h5"), DsecEventFile(tmp_path / "without.h5")
    assert without.missing == ["ms_to_idx", "t_offset"] and with_index.missing == []
    for start, end in ((-5_000, 999), (0, 50_000), (123_456, 173_456), (449_000, 499_000), (480_000, 900_000)):
        a, b = with_index.window(start, end), without.window(start, end)
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
        assert a[2].size == ((stamps > start) & (stamps <= end)).sum()
    root = tmp_path / "dsec"
    fx.write_train_sequence(root / "train" / "zurich_city_01_a", with_indices=False)
    fx.write_train_sequence(root / "train" / "zurich_city_02_a", seed=1)
    fx.write_train_sequence(root / "train" / "thun_00_a", seed=2)
    capsys.readouterr()
    prepare(root, out=tmp_path / "prep", **SPLITS)
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "2 event file(s) have no ms_to_idx and no t_offset" in notes[0]


def test_calibration_gives_focal_baseline_from_q(tmp_path):
    fx.write_calibration(tmp_path / "cam_to_cam.yaml", fx=580.0, baseline_m=0.5)
    calib = read_calibration(tmp_path / "cam_to_cam.yaml")
    assert calib.focal_baseline_px_m == pytest.approx(290.0) and calib.baseline_m == pytest.approx(0.5)


def test_unpacked_zip_layout_is_found(tmp_path):
    root = tmp_path / "dsec"
    for k, name in enumerate(("zurich_city_01_a", "zurich_city_02_a", "thun_00_a")):
        fx.write_train_sequence(tmp_path / "staging" / name, seed=k)
        for part in ("events", "disparity", "calibration"):
            shutil.copytree(tmp_path / "staging" / name / part, root / f"train_{part}" / name / part)
    manifest = prepare(root, out=tmp_path / "prep", **SPLITS)
    assert sorted(manifest["sequences"]) == ["thun_00_a", "zurich_city_01_a", "zurich_city_02_a"]


def _one_sequence_root(tmp_path: Path) -> Path:
    root = tmp_path / "dsec"
    for k, name in enumerate(("zurich_city_01_a", "zurich_city_02_a", "thun_00_a")):
        fx.write_train_sequence(root / "train" / name, seed=k)
    return root


def _break_rectify_map(seq: Path) -> str:
    fx.write_rectify_map(seq / "events/left/rectify_map.h5", np.zeros((260, 346, 2), np.float32))
    return "'rectify_map' has shape (260, 346, 2), expected (480, 640, 2)"


def _break_png_depth(seq: Path) -> str:
    cv2.imwrite(str(seq / "disparity/event/000002.png"), np.zeros((480, 640), np.uint8))
    return "a 8-bit image with 1 channel(s); expected a 16-bit single-channel disparity PNG"


def _break_png_size(seq: Path) -> str:
    cv2.imwrite(str(seq / "disparity/event/000004.png"), np.zeros((260, 346), np.uint16))
    return "260 x 346 pixels, expected 480 x 640"


def _break_count(seq: Path) -> str:
    (seq / "disparity/timestamps.txt").write_text("".join(f"{50_000_000_000 + 100_000 * k}\n" for k in range(3)))
    return "3 timestamps for 4 PNGs"


def _break_sorting(seq: Path) -> str:
    x, y, t, p = (np.array([1, 2, 3]), np.array([1, 2, 3]), np.array([50_000_000_900, 50_000_000_500, 50_000_600_000]),
                  np.array([0, 1, 0]))
    fx.write_events(seq / "events/left/events.h5", x, y, t, p, fx.T_OFFSET_US["left"], with_ms_to_idx=False)
    return "events/t is not sorted"


def _break_polarity(seq: Path) -> str:
    stamps = 50_000_000_000 + np.arange(0, 400_000, 1000)
    fx.write_events(seq / "events/left/events.h5", stamps % 640, stamps % 480, stamps, np.full(stamps.size, 2),
                    fx.T_OFFSET_US["left"])
    return "events/p holds 2"


def _break_missing(seq: Path) -> str:
    (seq / "calibration/cam_to_cam.yaml").unlink()
    return "cam_to_cam.yaml not found; searched: "


BREAKERS = [_break_rectify_map, _break_png_depth, _break_png_size, _break_count, _break_sorting, _break_polarity,
            _break_missing]


@pytest.mark.parametrize("breaker", BREAKERS, ids=[b.__name__[7:] for b in BREAKERS])
def test_bad_input_is_one_line_naming_the_file_and_nothing_is_written(tmp_path, breaker):
    root = _one_sequence_root(tmp_path)
    expected = breaker(root / "train" / "zurich_city_01_a")
    with pytest.raises(UserError, match=None) as err:
        prepare(root, out=tmp_path / "prep", **SPLITS)
    assert expected in str(err.value) and "zurich_city_01_a" in str(err.value)
    assert not (tmp_path / "prep").exists() and [p.name for p in tmp_path.iterdir()] == ["dsec"]


def test_bad_benchmark_csv_exits_2_from_the_cli(tmp_path):
    root = _one_sequence_root(tmp_path)
    fx.write_test_sequence(root / "test" / "zurich_city_13_a", root / "test_disparity_timestamps")
    (root / "test_disparity_timestamps" / "zurich_city_13_a.csv").write_text("# timestamp_us, file_index\n12;4\n")
    result = subprocess.run([sys.executable, str(REPO / "data_tools" / "prepare_dsec.py"), "--dsec-root", str(root),
                             "--out", str(tmp_path / "prep"), "--val-sequences", "zurich_city_02_a",
                             "--eval-sequences", "thun_00_a"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {root / 'test_disparity_timestamps' / 'zurich_city_13_a.csv'}: line 2 is '12;4'; "
        "expected 'timestamp_us, file_index'"]
    assert not (tmp_path / "prep").exists()


def test_held_out_sequences_must_exist(tmp_path):
    root = _one_sequence_root(tmp_path)
    with pytest.raises(UserError, match="--val-sequences zurich_city_09_b,interlaken_00_g: zurich_city_09_b, "
                                        "interlaken_00_g not among the training sequences found"):
        prepare(root, out=tmp_path / "prep")
