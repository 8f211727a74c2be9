"""The DSEC chain downstream of prepare: evaluation, submission, inference on a raw sequence folder, refusal."""

from __future__ import annotations

import json

import cv2
import dsec_fixtures as fx
import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filter)
import numpy as np
import pytest
import torch
from eval_toys import make_checkpoint

from common.errors import UserError
from data_tools.dataset import StereoEventDataset
from data_tools.prepare_dsec import prepare
from data_tools.raw_windows import count_dsec_windows, iter_dsec_windows
from eval import disparity as disparity_cli
from eval import dsec_submission
from stereo import infer
from stereo.checkpoint import load_model_from_checkpoint

SPLITS = {"val": ["zurich_city_02_a"], "evaluate": ["thun_00_a"]}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsec_chain")
    written = fx.write_download(root / "dsec")
    prepare(root / "dsec", out=root / "prepared", **SPLITS)
    return root, written, make_checkpoint(root / "snn.pt")


def test_submission_has_one_png_per_csv_row_holding_the_prediction(chain, tmp_path):
    root, written, ckpt = chain
    out = tmp_path / "submission"
    assert dsec_submission.main(["--checkpoint", str(ckpt), "--data", str(root / "prepared"), "--out", str(out),
                                 "--device", "cpu"]) == 0
    table = written["test"]["zurich_city_13_a"]
    assert sorted(p.name for p in (out / "zurich_city_13_a").iterdir()) == [f"{i:06d}.png" for _, i in table]
    model, _ = load_model_from_checkpoint(ckpt, "cpu")
    item = StereoEventDataset(root / "prepared", "benchmark", num_bins=2)[1]
    with torch.no_grad():
        pred = model(item["left"][None], item["right"][None])[0].numpy()
    png = cv2.imread(str(out / "zurich_city_13_a" / f"{item['file_index']:06d}.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == (480, 640)
    np.testing.assert_array_equal(png, np.clip(np.rint(pred * 256), 0, 65535).astype(np.uint16))
    from_csvs = dsec_submission.expected_from_csvs(root / "dsec" / "test_disparity_timestamps")
    assert from_csvs == dsec_submission.expected_from_manifest(root / "prepared") == {"zurich_city_13_a": [2, 4, 6]}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def _submission(folder, indices=(2, 4, 6), seq="zurich_city_13_a", value=256):
    (folder / seq).mkdir(parents=True)
    for i in indices:
        cv2.imwrite(str(folder / seq / f"{i:06d}.png"), np.full((480, 640), value, np.uint16))
    return folder


def test_submission_check_finds_what_dsecs_checker_finds(tmp_path):
    expected = {"zurich_city_13_a": [2, 4, 6]}
    assert dsec_submission.check_submission(_submission(tmp_path / "good"), expected) == 3
    with pytest.raises(UserError, match=r"3 files, expected 3 \(missing \['000006.png'\], unexpected \['000008.png'\]\)"):
        dsec_submission.check_submission(_submission(tmp_path / "names", (2, 4, 8)), expected)
    with pytest.raises(UserError, match=r"holds \['zurich_city_13_a', 'zurich_city_14_a'\], expected exactly"):
        dsec_submission.check_submission(_submission(_submission(tmp_path / "extra"), seq="zurich_city_14_a"), expected)
    small = _submission(tmp_path / "small")
    cv2.imwrite(str(small / "zurich_city_13_a" / "000004.png"), np.zeros((240, 320), np.uint16))
    with pytest.raises(UserError, match=r"000004.png: uint16 \(240, 320\), expected a 16-bit 480 x 640 PNG"):
        dsec_submission.check_submission(small, expected)
    eight = _submission(tmp_path / "eight")
    cv2.imwrite(str(eight / "zurich_city_13_a" / "000002.png"), np.zeros((480, 640), np.uint8))
    with pytest.raises(UserError, match="uint8"):
        dsec_submission.check_submission(eight, expected)
    np.testing.assert_array_equal(dsec_submission.disparity_png(np.array([-1.0, np.nan, 1.5, 300.0])),
                                  [0, 0, 384, 65535])


def test_infer_on_a_raw_dsec_sequence_folder(chain, tmp_path):
    root, _, ckpt = chain
    folder = root / "dsec" / "test" / "zurich_city_13_a"
    out = tmp_path / "infer"
    assert infer.main(["--checkpoint", str(ckpt), "--dsec-sequence", str(folder), "--max-windows", "2",
                       "--out", str(out), "--device", "cpu"]) == 0
    assert count_dsec_windows(folder) == 5  # events up to just before 300 ms: windows ending at 50 .. 250 ms
    with h5py.File(out / "zurich_city_13_a_disparity.hdf5") as h5:
        disp, depth, t_s = h5["disparity_px"][:], h5["depth_m"][:], h5["t_s"][:]
    assert disp.shape == (2, 480, 640)
    np.testing.assert_allclose(depth, fx.FX * fx.BASELINE_M / (disp + 1e-7), rtol=1e-5)
    assert t_s[0] == pytest.approx((fx.T_OFFSET_US["left"] + 50_000) * 1e-6)
    first = next(iter_dsec_windows(folder, num_bins=2))
    events = first["left"].sum()  # binary spikes: at most the window's events, at least one
    assert first["left"].shape == (2, 2, 480, 640) and 0 < events


def test_eval_reports_dsec_pooled_metrics_and_the_window_event_mask(chain, tmp_path, capsys):
    root, _, ckpt = chain
    out = tmp_path / "eval"
    assert disparity_cli.main(["--checkpoint", str(ckpt), "--data", str(root / "prepared"), "--mask", "both",
                               "--baselines", "constant", "--out", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "pooled over pixels (DSEC benchmark)" in text and "pixels with a left event in the window" in text
    results = json.loads((out / "metrics.json").read_text())["results"]
    constant = results["constant"]["dense"]["all"]  # training disparity 10 px, evaluation sequence 12 px
    assert constant["dsec_mae_px"] == pytest.approx(2.0) and constant["dsec_1pe"] == 100.0 and constant["dsec_2pe"] == 0.0
    result = results["snn"]["dense"]["all"]
    assert result["num_pixels"] == 3 * 480 * 640 // 2  # thun_00_a: 3 maps, bottom half known
    assert result["dsec_mae_px"] == pytest.approx(result["mde_px"])  # equal pixel counts per image


def test_a_network_below_the_datas_disparity_is_refused(tmp_path):
    root = tmp_path / "dsec"
    for k, name in enumerate(("zurich_city_01_a", "zurich_city_02_a", "thun_00_a")):
        fx.write_train_sequence(root / "train" / name, seed=k, disparity_px=30.0)
    prepare(root, out=tmp_path / "prepared", **SPLITS)
    ckpt = make_checkpoint(tmp_path / "snn.pt")  # max disparity 24 px
    with pytest.raises(UserError, match="the network's maximum disparity is 24 px, but the ground truth in .* reaches 30 px"):
        disparity_cli.main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "prepared"), "--out",
                            str(tmp_path / "eval"), "--device", "cpu"])


def test_sgbm_searches_the_datas_whole_disparity_range(tmp_path):
    """A 48 px search would leave 60 px ground truth unreachable: the grid widens to the next multiple of 16."""
    from eval.evaluate import SGBMMethod

    root = tmp_path / "dsec"
    for k, name in enumerate(("zurich_city_01_a", "zurich_city_02_a", "thun_00_a")):
        fx.write_train_sequence(root / "train" / name, seed=k, frames=2, disparity_px=60.0)
    prepare(root, out=tmp_path / "prepared", **SPLITS)
    sgbm = SGBMMethod(tmp_path / "prepared", "test", 0, 1)
    assert sgbm.params.num_disparities == 64 and {g["num_disparities"] for g in sgbm.grid} == {64}
