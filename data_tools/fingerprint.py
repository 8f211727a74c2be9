"""A content fingerprint of a raw recording folder: which recording a checkpoint was trained on.

sha256 over, per sequence in name order, both cameras' ``davis/<side>/events`` arrays and the
ground-truth depth with its timestamps, as little-endian float64 bytes, and the rectification maps'
text. HDF5 metadata (chunking,
compression, creation times) does not enter, so the fingerprint changes exactly when the data does:
``weights/README.md`` records it, and ``tests/test_weights.py`` fails when the synthetic generator's
default output no longer matches the recording the shipped weights were trained on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UserError
from data_tools.mvsec import DEPTH_KEY, DEPTH_TS_KEY, EVENTS_KEY, SIDES, find_sequence_files, open_hdf5

BLOCK_ROWS = 1 << 20


def _update(digest: Any, dataset: Any) -> None:
    for start in range(0, dataset.shape[0], BLOCK_ROWS):
        block = np.asarray(dataset[start:start + BLOCK_ROWS], dtype="<f8")
        digest.update(np.ascontiguousarray(block).tobytes())


def recording_fingerprint(root: Path | str, sequences: list[str]) -> str:
    """Hex sha256 of the named sequences' events and depth ground truth under ``root``."""
    if not sequences:
        raise UserError(f"{root}: no sequences to fingerprint")
    digest = hashlib.sha256()
    for sequence in sorted(sequences):
        files = find_sequence_files(Path(root), sequence)
        digest.update(sequence.encode())
        for key in sorted(files.maps):
            digest.update(files.maps[key].read_bytes())
        with open_hdf5(files.data) as h5:
            for side in SIDES:
                _update(digest, h5[EVENTS_KEY.format(side=side)])
        with open_hdf5(files.gt) as h5:
            _update(digest, h5[DEPTH_KEY])
            _update(digest, h5[DEPTH_TS_KEY])
    return digest.hexdigest()
