"""The SGBM baseline recovers a known shift and handles its invalid pixels as documented."""

from __future__ import annotations

import numpy as np
import pytest

from eval.sgbm import SGBMParams, count_image, fill_invalid, sgbm_disparity, tune


def test_count_image_scales_to_uint8():
    counts = np.zeros((2, 2, 3, 4), np.float32)  # (T, C, H, W)
    counts[0, 0, 0, 0] = 2
    counts[1, 1, 0, 0] = 2  # same pixel, other bin and polarity: 4 events
    counts[0, 0, 2, 3] = 1
    img = count_image(counts)
    assert img.dtype == np.uint8 and img.shape == (3, 4)
    assert img[0, 0] == 255 and img[1, 1] == 0
    assert 60 <= img[2, 3] <= 70  # 1 of a cap just below 4 events
    assert not count_image(np.zeros((3, 4))).any()


def test_fill_invalid_takes_nearest_valid_value():
    disp = np.array([[-1.0, 5.0, -1.0, -1.0, 9.0]], np.float32)
    valid = disp >= 0
    np.testing.assert_array_equal(fill_invalid(disp, valid), [[5.0, 5.0, 5.0, 9.0, 9.0]])
    assert not fill_invalid(disp, np.zeros_like(valid)).any()


def test_sgbm_recovers_known_disparity():
    rng = np.random.default_rng(0)
    disparity_px = 8
    counts = rng.poisson(0.6, (80, 160 + disparity_px)).astype(np.float32)
    left = count_image(counts[:, :-disparity_px])
    right = count_image(counts[:, disparity_px:])  # a point at left x is at right x - d
    params = SGBMParams(block_size=7, blur_sigma_px=1.0, uniqueness_ratio=5, num_disparities=16)
    disp, valid_fraction = sgbm_disparity(left, right, params)
    assert disp.shape == left.shape and valid_fraction > 0.5
    interior = disp[10:-10, 30:-10]
    assert np.median(np.abs(interior - disparity_px)) < 0.5
    gt = np.full(left.shape, float(disparity_px), np.float32)
    mask = np.zeros(left.shape, bool)
    mask[10:-10, 30:-10] = True
    swapped = [(right, left)]  # matching the wrong way round must lose the tuning
    best, table = tune(swapped + [(left, right)], [gt, gt], [mask, mask], [params])
    assert table[0]["val_mde_px"] > 1.0
    best, table = tune([(left, right)], [gt], [mask], [SGBMParams(3, 0.0, 0, 16), params])
    assert best == min(zip(table, [SGBMParams(3, 0.0, 0, 16), params]), key=lambda rp: rp[0]["val_mde_px"])[1]
    assert table[1]["val_mde_px"] == pytest.approx(float(np.abs(disp - disparity_px)[mask].mean()))
