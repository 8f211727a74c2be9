"""Every dependency the project uses imports (a broken install fails here, not halfway through a run)."""

from __future__ import annotations

import importlib

import pytest

MODULES = ["numpy", "h5py", "hdf5plugin", "cv2", "open3d", "yaml", "tqdm", "matplotlib", "tensorboard", "torch",
           "scipy", "loguru", "spikingjelly", "spikingjelly.activation_based.op_counter"]


@pytest.mark.parametrize("name", MODULES)
def test_import(name):
    assert importlib.import_module(name) is not None


def test_hdf5plugin_filter_round_trip(tmp_path):
    import h5py
    import hdf5plugin
    import numpy as np

    data = np.arange(1000, dtype=np.int64)
    with h5py.File(tmp_path / "a.h5", "w") as h5:
        h5.create_dataset("x", data=data, **hdf5plugin.Blosc(cname="zstd"))
    with h5py.File(tmp_path / "a.h5") as h5:
        np.testing.assert_array_equal(h5["x"][:], data)
