"""The generated recording: real occlusions, events that match the ground truth, determinism, pipeline."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from data_tools.constants import FOCAL_BASELINE_PX_M
from data_tools.dataset import StereoEventDataset
from data_tools.make_synthetic import generate, rectified_depth
from data_tools.prepare_mvsec import prepare
from data_tools.prepared import read_events
from data_tools.raw_windows import count_raw_windows, iter_raw_windows

F_B = FOCAL_BASELINE_PX_M["indoor_flying"]
SEED = 3


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate(root / "raw", sequences=2, seconds=1.0, seed=SEED)
    prepare(root / "raw", out=root / "prepared")
    return root


def test_layout_and_split(recording):
    raw = recording / "raw"
    with h5py.File(raw / "synthetic_flying1_data.hdf5") as h5:
        events = h5["davis/left/events"][:]
        assert events.dtype == np.float64 and events.shape[1] == 4
        assert np.all(np.diff(events[:, 2]) >= 0) and set(np.unique(events[:, 3])) <= {-1.0, 1.0}
        assert events[0, 2] > 1.5e9  # absolute Unix seconds, as MVSEC
        assert h5["davis/left/image_raw"].shape[1:] == (260, 346)
    with h5py.File(raw / "synthetic_flying1_gt.hdf5") as h5:
        depth = h5["davis/left/depth_image_rect"][:]
        ts = h5["davis/left/depth_image_rect_ts"][:]
    assert depth.shape == (21, 260, 346) and np.allclose(np.diff(ts), 0.05)
    finite = depth[np.isfinite(depth)]
    assert finite.min() > 0.6 and finite.max() < 8.0 and np.isnan(depth).any()
    ds_train = StereoEventDataset(recording / "prepared", "train")
    ds_val = StereoEventDataset(recording / "prepared", "val")
    ds_test = StereoEventDataset(recording / "prepared", "test")
    assert len(ds_train) == 20 and len(ds_val) == 4 and len(ds_test) == 16  # first window dropped, 20 % val
    assert {ds_val[i]["sequence"] for i in range(len(ds_val))} == {"synthetic_flying1"}


def test_deterministic_for_a_seed(tmp_path, recording):
    generate(tmp_path, sequences=2, seconds=0.2, seed=SEED)
    with h5py.File(tmp_path / "synthetic_flying1_data.hdf5") as a, \
            h5py.File(recording / "raw" / "synthetic_flying1_data.hdf5") as b:
        first = a["davis/left/events"][:]
        other = b["davis/left/events"][: len(first)]
    t_cut = first[-1, 2] - 0.02  # the longer run continues past 0.2 s; compare the common part
    np.testing.assert_array_equal(first[first[:, 2] < t_cut], other[other[:, 2] < t_cut])


def _occluded(depth_left: np.ndarray, depth_right: np.ndarray) -> np.ndarray:
    """Left pixels whose point is hidden in the right view by something nearer."""
    height, width = depth_left.shape
    ys, xs = np.mgrid[0:height, 0:width]
    with np.errstate(divide="ignore", invalid="ignore"):
        xr = np.rint(xs - F_B / depth_left).astype(np.int64)
    inside = np.isfinite(depth_left) & (xr >= 0)
    seen = np.full(depth_left.shape, np.inf, dtype=np.float32)
    seen[inside] = depth_right[ys[inside], xr[inside]]
    return inside & (seen < depth_left * 0.95)


def _count_image(events) -> np.ndarray:
    image = np.zeros((260, 346), dtype=np.float64)
    np.add.at(image, (events.y.astype(np.int64), events.x.astype(np.int64)), 1.0)
    return gaussian_filter(image, 1.0)


def _peak_disparity(left: np.ndarray, right: np.ndarray, y0: int, x0: int, size: int) -> float:
    """Disparity (0.05 px steps) maximising the normalised correlation of a left tile with the right image."""
    patch = left[y0:y0 + size, x0:x0 + size]
    patch = (patch - patch.mean()) / (patch.std() + 1e-9)
    cols = np.arange(x0, x0 + size, dtype=np.float64)
    best, best_d = -np.inf, 0.0
    for d in np.arange(0.0, 40.0, 0.05):
        src = cols - d
        if src[0] < 0:
            break
        lo = np.floor(src).astype(np.int64)
        frac = src - lo
        rows = right[y0:y0 + size]
        shifted = rows[:, lo] * (1 - frac) + rows[:, np.minimum(lo + 1, 345)] * frac
        shifted = (shifted - shifted.mean()) / (shifted.std() + 1e-9)
        score = float((patch * shifted).mean())
        if score > best:
            best, best_d = score, d
    return best_d


def test_occlusions_and_event_correlation(recording):
    """Occluded pixels exist; on non-occluded textured regions events peak at the GT disparity."""
    prepared = recording / "prepared"
    hits, total, occluded_fraction = 0, 0, []
    with h5py.File(prepared / "synthetic_flying1.hdf5") as h5:
        for row in range(0, 20, 3):
            frame = int(h5["frame_index"][row])
            t_s = frame * 0.05
            depth_left = rectified_depth("synthetic_flying1", SEED, t_s, "left")
            depth_right = rectified_depth("synthetic_flying1", SEED, t_s, "right")
            occluded = _occluded(depth_left, depth_right)
            occluded_fraction.append(occluded.mean())
            disp = h5["disp_px"][row]
            left = _count_image(read_events(h5["left"], row))
            right = _count_image(read_events(h5["right"], row))
            raw_left = np.zeros((260, 346))
            ev = read_events(h5["left"], row)
            raw_left[ev.y.astype(int), ev.x.astype(int)] = 1
            size = 24
            for y0 in range(8, 260 - size - 8, size):
                for x0 in range(48, 346 - size - 8, size):
                    tile = (slice(y0, y0 + size), slice(x0, x0 + size))
                    d = disp[tile]
                    grown = occluded[max(0, y0 - 4):y0 + size + 4, max(0, x0 - 4):x0 + size + 4]
                    if not np.isfinite(d).all() or np.ptp(d) > 0.5 or grown.any():
                        continue
                    if raw_left[tile].mean() < 0.25:  # textured: events on a quarter of the pixels
                        continue
                    total += 1
                    hits += abs(_peak_disparity(left, right, y0, x0, size) - float(np.median(d))) <= 0.5
    assert max(occluded_fraction) > 0.005
    assert total >= 15, total
    assert hits >= 0.9 * total, (hits, total)


def test_dataset_items_and_crops(recording):
    ds = StereoEventDataset(recording / "prepared", "train", num_bins=3, encoding="count", crop=(96, 120), seed=1)
    item = ds[0]
    assert item["left"].shape == (3, 2, 96, 120) and item["left"].dtype == torch.float32
    assert item["disp_px"].shape == (96, 120) and item["valid"].dtype == torch.bool
    assert torch.all(item["disp_px"][~item["valid"]] == 0)
    full = StereoEventDataset(recording / "prepared", "train", num_bins=3, encoding="count")[0]
    assert full["left"].sum() >= item["left"].sum() > 0  # a crop holds a subset of the events
    signed = StereoEventDataset(recording / "prepared", "train", encoding="signed")[0]
    assert signed["left"].shape == (5, 1, 260, 346) and set(signed["left"].unique().tolist()) <= {-1.0, 0.0, 1.0}
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["left"].shape == (2, 3, 2, 96, 120)


def test_raw_windows_match_the_raw_events(recording):
    root = recording / "raw"
    windows = list(iter_raw_windows(root, "synthetic_flying1", rate_hz=20, window_ms=50, num_bins=5))
    assert len(windows) == count_raw_windows(root, "synthetic_flying1") >= 19
    assert np.all(np.diff([w["t_us"] for w in windows]) == 50_000)
    window = windows[7]
    t0_s = window["t_s"] - window["t_us"] * 1e-6
    with h5py.File(root / "synthetic_flying1_data.hdf5") as h5:
        raw = h5["davis/right/events"][:]
    t_us = np.rint((raw[:, 2] - t0_s) * 1e6).astype(np.int64)
    sel = (t_us > window["t_us"] - 50_000) & (t_us <= window["t_us"])  # identity maps: raw = rectified
    bins = np.ceil((t_us[sel] - (window["t_us"] - 50_000)) / 10_000).astype(int) - 1
    expect = np.zeros((5, 2, 260, 346), np.float32)
    expect[bins, (raw[sel, 3] < 0).astype(int), raw[sel, 1].astype(int), raw[sel, 0].astype(int)] = 1
    np.testing.assert_array_equal(window["right"], expect)
    assert window["right"].sum() > 1000
