"""stereo/infer.py on a small synthetic recording without using its ground truth."""

from __future__ import annotations

import cv2
import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filter)
import numpy as np
import pytest
import torch
from eval_toys import make_checkpoint, make_recording

from common.errors import UserError
from data_tools.constants import FOCAL_BASELINE_PX_M, disparity_to_depth
from data_tools.raw_windows import count_raw_windows, iter_raw_windows
from stereo import infer
from stereo.checkpoint import load_model_from_checkpoint


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    raw, _ = make_recording(root)
    return raw, make_checkpoint(root / "snn.pt")


def test_one_disparity_map_per_window(recording, tmp_path, capsys):
    raw, ckpt = recording
    out = tmp_path / "infer"
    assert infer.main(["--checkpoint", str(ckpt), "--mvsec-root", str(raw), "--out", str(out), "--video", "--png",
                       "--device", "cpu"]) == 0
    assert "windows/s" in capsys.readouterr().out
    sequence = "synthetic_flying1"  # the synthetic recording's evaluation sequence, the default
    expected = count_raw_windows(raw, sequence)
    with h5py.File(out / f"{sequence}_disparity.hdf5", "r") as h5:
        disp, depth, t_us, t_s = (h5[k][:] for k in ("disparity_px", "depth_m", "t_us", "t_s"))
        assert h5.attrs["sequence"] == sequence
    assert disp.shape == (expected, 260, 346) and expected > 5
    np.testing.assert_array_equal(np.diff(t_us), 50_000)
    np.testing.assert_allclose(np.diff(t_s), 0.05, atol=1e-6)
    np.testing.assert_allclose(depth, disparity_to_depth(disp, FOCAL_BASELINE_PX_M["indoor_flying"]), rtol=1e-5)
    model, _ = load_model_from_checkpoint(ckpt, "cpu")
    third = next(w for i, w in enumerate(iter_raw_windows(raw, sequence, num_bins=2)) if i == 2)
    with torch.no_grad():
        direct = model(torch.from_numpy(third["left"])[None], torch.from_numpy(third["right"])[None])[0].numpy()
    np.testing.assert_allclose(disp[2], direct, atol=1e-5)
    video = cv2.VideoCapture(str(out / f"{sequence}_disparity.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == expected
    assert len(list((out / f"{sequence}_png").glob("*.png"))) == expected
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_max_windows_and_bad_inputs(recording, tmp_path):
    raw, ckpt = recording
    out = tmp_path / "infer"
    infer.main(["--checkpoint", str(ckpt), "--mvsec-root", str(raw), "--max-windows", "3", "--out", str(out),
                "--device", "cpu"])
    with h5py.File(out / "synthetic_flying1_disparity.hdf5", "r") as h5:
        assert h5["disparity_px"].shape[0] == 3
    bad = tmp_path / "bad"
    cases = [
        (["--checkpoint", str(tmp_path / "none.pt"), "--mvsec-root", str(raw)], "checkpoint not found"),
        (["--checkpoint", str(ckpt), "--mvsec-root", str(tmp_path / "nowhere"), "--sequence", "indoor_flying1"],
         "nowhere"),
        (["--checkpoint", str(ckpt), "--mvsec-root", str(raw), "--sequence", "indoor_flying7"], "indoor_flying7"),
        (["--checkpoint", str(ckpt), "--mvsec-root", str(tmp_path)], "--sequence is required"),
    ]
    for argv, message in cases:
        with pytest.raises(UserError, match=message):
            infer.main([*argv, "--out", str(bad), "--device", "cpu"])
    assert not bad.exists()
