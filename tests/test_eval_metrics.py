"""Metrics on small hand-computed arrays (SPEC §8)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from common.metrics import aggregate, group_aggregate, image_metrics

FB = 20.0  # f*B in px*m: disparity 10 px <-> 2 m


def test_image_metrics_by_hand():
    gt = np.array([[10.0, 10.0], [4.0, 5.0]])
    pred = np.array([[11.0, 12.0], [4.0, 8.5]])  # errors 1, 2, 0, 3.5
    mask = np.ones((2, 2), bool)
    m = image_metrics(pred, gt, mask, FB)
    assert m["mde_px"] == pytest.approx((1 + 2 + 0 + 3.5) / 4)
    assert m["rmse_px"] == pytest.approx(math.sqrt((1 + 4 + 0 + 12.25) / 4))
    # strict nPE: |err| = 1 is not an error at n = 1, |err| = 2 not at n = 2
    assert m["1pa"] == pytest.approx(50.0)  # 1, 0 are <= 1
    assert m["2pa"] == pytest.approx(75.0)
    assert m["3pa"] == pytest.approx(75.0)  # 3.5 > 3
    # depths: gt 2, 2, 5, 4 m; pred 20/11, 20/12, 5, 20/8.5
    depth_err = np.abs(np.array([20 / 11, 20 / 12, 5.0, 20 / 8.5]) - np.array([2.0, 2.0, 5.0, 4.0]))
    assert m["mean_depth_err_cm"] == pytest.approx(100 * depth_err.mean(), rel=1e-6)
    # even count: the lower of the two middle values
    assert m["median_depth_err_cm"] == pytest.approx(100 * np.sort(depth_err)[1], rel=1e-6)
    assert m["num_pixels"] == 4


def test_mask_and_non_finite_ground_truth_are_excluded():
    gt = np.array([[10.0, np.inf, np.nan, 3.0]])
    pred = np.array([[12.0, 1.0, 1.0, 100.0]])
    mask = np.array([[True, True, True, False]])  # inf/NaN inside the mask still never count
    m = image_metrics(pred, gt, mask, FB)
    assert m["num_pixels"] == 1
    assert m["mde_px"] == pytest.approx(2.0)
    assert m["median_depth_err_cm"] == pytest.approx(100 * abs(20 / 12 - 2.0), rel=1e-6)


def test_torch_and_numpy_inputs_agree():
    rng = np.random.default_rng(0)
    gt, pred = rng.uniform(1, 30, (5, 7)), rng.uniform(1, 30, (5, 7))
    mask = rng.random((5, 7)) > 0.3
    a = image_metrics(pred, gt, mask, FB)
    b = image_metrics(torch.from_numpy(pred).float(), torch.from_numpy(gt).float(), torch.from_numpy(mask), FB)
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-5)


def test_empty_image_skipped_or_counted_as_zero_error():
    full = image_metrics(np.array([[5.0, 5.0]]), np.array([[4.0, 2.0]]), np.ones((1, 2), bool), FB)  # MDE 2
    empty = image_metrics(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2), bool), FB)
    assert empty is None
    skipped = aggregate([full, empty])
    assert skipped["images_used"] == 1 and skipped["images_total"] == 2
    assert skipped["mde_px"] == pytest.approx(2.0)
    assert skipped["1pa"] == pytest.approx(50.0)
    counted = aggregate([full, empty], include_empty=True)
    assert counted["images_used"] == 2
    assert counted["mde_px"] == pytest.approx(1.0)
    assert counted["1pa"] == pytest.approx(75.0)  # (50 + 100) / 2
    nothing = aggregate([empty, None])
    assert nothing["images_used"] == 0 and math.isnan(nothing["mde_px"])


def test_mean_over_images_not_over_pixels():
    one_pixel = image_metrics(np.array([[14.0]]), np.array([[10.0]]), np.ones((1, 1), bool), FB)  # MDE 4
    many_pixels = image_metrics(np.full((1, 3), 10.0), np.full((1, 3), 10.0), np.ones((1, 3), bool), FB)  # MDE 0
    assert aggregate([one_pixel, many_pixels])["mde_px"] == pytest.approx(2.0)  # per pixel it would be 1.0


def test_group_aggregate_per_sequence_and_overall():
    a = image_metrics(np.array([[11.0]]), np.array([[10.0]]), np.ones((1, 1), bool), FB)
    b = image_metrics(np.array([[13.0]]), np.array([[10.0]]), np.ones((1, 1), bool), FB)
    groups = group_aggregate([("s1", a), ("s2", b), ("s2", a)])
    assert groups["s1"]["mde_px"] == pytest.approx(1.0)
    assert groups["s2"]["mde_px"] == pytest.approx(2.0)
    assert groups["all"]["mde_px"] == pytest.approx(5.0 / 3.0)
    assert groups["all"]["images_used"] == 3


def test_dsec_metrics_pool_over_pixels_not_images():
    """Image A: 4 pixels, errors 1, 2, 0, 3.5; image B: 1 pixel, error 10. DSEC pools the 5 pixels;
    the MVSEC protocol averages the two images' means."""
    a = image_metrics(np.array([[11.0, 12.0], [4.0, 8.5]]), np.array([[10.0, 10.0], [4.0, 5.0]]), np.ones((2, 2), bool), FB)
    b = image_metrics(np.array([[20.0]]), np.array([[10.0]]), np.ones((1, 1), bool), FB)
    out = aggregate([a, b, None])
    assert out["dsec_mae_px"] == pytest.approx((1 + 2 + 0 + 3.5 + 10) / 5)
    assert out["mde_px"] == pytest.approx(((1 + 2 + 0 + 3.5) / 4 + 10) / 2)
    assert out["dsec_1pe"] == pytest.approx(100 * 3 / 5)  # 2, 3.5, 10 exceed 1 px (strict)
    assert out["dsec_2pe"] == pytest.approx(100 * 2 / 5)  # 3.5, 10
    assert out["dsec_rmse_px"] == pytest.approx(math.sqrt((1 + 4 + 0 + 12.25 + 100) / 5))
    assert math.isnan(aggregate([None])["dsec_mae_px"])
