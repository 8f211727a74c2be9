"""Bad input: exit code 2, one line naming the file and what was expected, no traceback, no output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_data_fixtures import W, simple_recording

from common.errors import UserError
from data_tools.dataset import StereoEventDataset
from data_tools.raw_windows import iter_raw_windows

REPO = Path(__file__).resolve().parent.parent


def _run_prepare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "data_tools" / "prepare_mvsec.py"), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def _edit(path: Path, action) -> None:
    with h5py.File(path, "a") as h5:
        action(h5)


def _replace(key, data):
    def action(h5):
        del h5[key]
        h5.create_dataset(key, data=data)
    return action


CASES = {
    "missing_root": (lambda root: root.rename(root.with_name("gone")), "directory not found"),
    "missing_file": (lambda root: (root / "handmade2_gt.hdf5").unlink(), "handmade2_gt.hdf5 not found; searched:"),
    "not_hdf5": (lambda root: (root / "handmade1_data.hdf5").write_text("hello"), "cannot be read as HDF5"),
    "truncated": (lambda root: _truncate(root / "handmade2_data.hdf5"), "cannot be read as HDF5 (truncated)"),
    "missing_dataset": (lambda root: _edit(root / "handmade1_data.hdf5", lambda h5: h5.__delitem__("davis/right/events")),
                        "dataset 'davis/right/events' missing"),
    "misshapen_dataset": (lambda root: _edit(root / "handmade1_data.hdf5", _replace("davis/left/events", np.zeros((5, 3)))),
                          "dataset 'davis/left/events' has shape (5, 3), expected (N, 4)"),
    "misshapen_depth": (lambda root: _edit(root / "handmade1_gt.hdf5",
                                           _replace("davis/left/depth_image_rect", np.zeros((4, 10, 10), np.float32))),
                        "'davis/left/depth_image_rect' has shape (4, 10, 10), expected (N, 260, 346)"),
    "map_shape": (lambda root: np.savetxt(root / "handmade_right_y_map.txt", np.zeros((259, W))),
                  "map has 259 rows x 346 columns, expected 260 rows x 346 columns"),
    "unsorted": (lambda root: _edit(root / "handmade2_data.hdf5", _unsort), "timestamps are not sorted"),
    "unsorted_first_rows": (lambda root: _edit(root / "handmade1_data.hdf5", _unsort_start), "timestamps are not sorted"),
    "nan_coordinates": (lambda root: _edit(root / "handmade1_data.hdf5", _nan_x),
                        "'davis/left/events' holds NaN or infinite values (row 5)"),
}


def _unsort_start(h5):
    """Out of order within the first rows read: the first block, before any window is written."""
    events = h5["davis/left/events"][:]
    events[[1, 2], 2] = events[[2, 1], 2] + np.array([0.0, 0.001])
    del h5["davis/left/events"]
    h5.create_dataset("davis/left/events", data=events)


def _nan_x(h5):
    events = h5["davis/left/events"][:]
    events[5, 0] = np.nan
    del h5["davis/left/events"]
    h5.create_dataset("davis/left/events", data=events)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _unsort(h5):
    events = h5["davis/left/events"][:]
    events[[10, 11], 2] = events[[11, 10], 2] + np.array([0.0, 0.01])
    del h5["davis/left/events"]
    h5.create_dataset("davis/left/events", data=events)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_recording(tmp_path, case):
    root = tmp_path / "raw"
    simple_recording(root, frames=3)
    damage, message = CASES[case]
    damage(root)
    out = tmp_path / "prepared"
    result = _run_prepare("--mvsec-root", str(root), "--out", str(out))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("prepare:")]  # progress bar
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0] and "Traceback" not in result.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("args, message", [
    (["--split", "4"], "--split 4: expected one of 1, 2, 3"),
    (["--family", "outdoor_day"], "outdoor_day family is not supported yet"),
    (["--family", "kitchen"], "unknown sequence family 'kitchen'"),
    (["--encoding", "rgb"], "encoding 'rgb'"),
])
def test_bad_options(tmp_path, args, message):
    root = tmp_path / "mvsec"
    root.mkdir()
    result = _run_prepare("--mvsec-root", str(root), "--out", str(tmp_path / "out"), *args)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_camera_without_events_in_any_window_prepares_with_empty_spikes(tmp_path):
    """Valid data (a camera that saw nothing, or whose events all fall off the sensor): it must prepare."""
    root = tmp_path / "raw"
    simple_recording(root, frames=3)
    for name in ("handmade1_data.hdf5", "handmade2_data.hdf5"):
        _edit(root / name, _replace("davis/right/events", np.zeros((0, 4))))
    from data_tools.prepare_mvsec import prepare

    prepare(root, out=tmp_path / "prepared")
    dataset = StereoEventDataset(tmp_path / "prepared", "train")
    item = dataset[0]
    assert float(item["right"].sum()) == 0.0 and float(item["left"].sum()) > 0.0


def test_out_below_a_file_is_one_line(tmp_path):
    root = tmp_path / "raw"
    simple_recording(root, frames=3)
    (tmp_path / "a_file").write_text("x")
    result = _run_prepare("--mvsec-root", str(root), "--out", str(tmp_path / "a_file" / "sub"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {tmp_path / 'a_file'}") and "not a folder" in last


def test_missing_real_files_list_the_searched_layouts(tmp_path):
    result = _run_prepare("--mvsec-root", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "indoor_flying2_data.hdf5 not found" in line
    for folder in (tmp_path, tmp_path / "indoor_flying", tmp_path / "indoor_flying2"):
        assert str(folder / "indoor_flying2_data.hdf5") in line


def test_maps_found_in_calib_folder(tmp_path):
    root = tmp_path / "raw"
    simple_recording(root, frames=3)
    calib = root / "handmade_calib"
    calib.mkdir()
    for path in root.glob("*_map.txt"):
        path.rename(calib / path.name)
    from data_tools.prepare_mvsec import prepare

    prepare(root, out=tmp_path / "prepared")
    assert (tmp_path / "prepared" / "manifest.json").is_file()


def test_library_errors(tmp_path):
    with pytest.raises(UserError, match="prepared dataset not found"):
        StereoEventDataset(tmp_path, "train")
    root = tmp_path / "raw"
    simple_recording(root, frames=3)
    with pytest.raises(UserError, match="not in the synthetic recording"):
        next(iter_raw_windows(root, "handmade7"))
    (root / "manifest.json").unlink()
    with pytest.raises(UserError, match="unknown sequence family 'handmade'"):
        next(iter_raw_windows(root, "handmade1"))
