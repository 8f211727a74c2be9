"""Voxelisation: bin edges, encodings, exact microsecond bins from absolute float64 timestamps."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import UserError
from data_tools.events import seconds_to_us
from data_tools.voxel import ENCODING_CHANNELS, bin_indices, voxelize


def test_bin_edges_half_open_on_the_left():
    # window (1000, 1500], 5 bins of 100 us: (1000,1100], (1100,1200], ...
    t = np.array([1000, 1001, 1100, 1101, 1200, 1499, 1500, 1501])
    np.testing.assert_array_equal(bin_indices(t, 1000, 1500, 5), [-1, 0, 0, 1, 1, 4, 4, -1])


def test_binary_count_signed_by_hand():
    x = np.array([1, 1, 1, 2, 0, 3])
    y = np.array([0, 0, 0, 1, 2, 2])
    t = np.array([10, 20, 30, 60, 100, 0])  # the last one sits on t_start: previous window
    p = np.array([1, 1, -1, -1, 1, 1])
    binary = voxelize(x, y, t, p, 0, 100, 2, 3, 4, "binary")
    count = voxelize(x, y, t, p, 0, 100, 2, 3, 4, "count")
    signed = voxelize(x, y, t, p, 0, 100, 2, 3, 4, "signed")
    assert binary.shape == count.shape == (2, 2, 3, 4) and signed.shape == (2, 1, 3, 4)
    expect_count = np.zeros((2, 2, 3, 4), np.float32)
    expect_count[0, 0, 0, 1] = 2  # two positive events at (1, 0) in bin 0
    expect_count[0, 1, 0, 1] = 1  # one negative there
    expect_count[1, 1, 1, 2] = 1
    expect_count[1, 0, 2, 0] = 1  # t = 100 = t_end: last bin
    np.testing.assert_array_equal(count, expect_count)
    np.testing.assert_array_equal(binary, (expect_count > 0).astype(np.float32))
    expect_signed = np.zeros((2, 1, 3, 4), np.float32)
    expect_signed[0, 0, 0, 1] = 1  # +2 - 1
    expect_signed[1, 0, 1, 2] = -1
    expect_signed[1, 0, 2, 0] = 1
    np.testing.assert_array_equal(signed, expect_signed)


def test_out_of_frame_events_ignored_and_empty_windows():
    out = voxelize(np.array([-1, 4]), np.array([0, 0]), np.array([5, 5]), np.array([1, 1]), 0, 10, 1, 1, 4)
    assert out.sum() == 0
    empty = voxelize(np.zeros(0), np.zeros(0), np.zeros(0, np.int64), np.zeros(0), 0, 10, 3, 2, 2, "count")
    assert empty.shape == (3, 2, 2, 2) and empty.sum() == 0


@pytest.mark.parametrize("encoding", list(ENCODING_CHANNELS))
def test_matches_np_add_at_reference(encoding):
    rng = np.random.default_rng(0)
    n, T, H, W = 20000, 5, 30, 40
    x, y = rng.integers(0, W, n), rng.integers(0, H, n)
    t, p = rng.integers(0, 50001, n), rng.choice([-1, 1], n)
    ref = np.zeros((T, 2, H, W))
    k = np.clip(np.ceil(t * T / 50000).astype(int) - 1, -1, None)
    ok = k >= 0
    np.add.at(ref, (k[ok], (p[ok] < 0).astype(int), y[ok], x[ok]), 1.0)
    out = voxelize(x, y, t, p, 0, 50000, T, H, W, encoding)
    if encoding == "count":
        np.testing.assert_array_equal(out, ref)
    elif encoding == "binary":
        np.testing.assert_array_equal(out, ref > 0)
    else:
        np.testing.assert_array_equal(out[:, 0], np.sign(ref[:, 0] - ref[:, 1]))


def test_absolute_float64_timestamps_keep_microsecond_bins():
    t0 = 1506117898.0
    t_us = np.array([1, 9_999, 10_000, 10_001, 49_999, 50_000])
    t_abs = t0 + t_us * 1e-6  # what an MVSEC file stores
    rel = seconds_to_us(t_abs, t0)
    np.testing.assert_array_equal(rel, t_us)
    np.testing.assert_array_equal(bin_indices(rel, 0, 50_000, 5), [0, 0, 0, 1, 4, 4])
    # float32 seconds (what careless readers do) would lose everything below ~128 s
    assert np.unique(np.float32(t_abs)).size < 3


def test_bad_encoding_is_a_user_error():
    with pytest.raises(UserError, match="encoding 'rgb'"):
        voxelize(np.zeros(1), np.zeros(1), np.ones(1, np.int64), np.ones(1), 0, 10, 1, 1, 1, "rgb")
