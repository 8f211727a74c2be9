"""``torch.utils.data.Dataset`` over a prepared folder: events voxelised on the fly (SPEC §3).

Because the prepared files hold rectified events, not tensors, any number of bins and any
encoding can be chosen here without rereading the raw recording. HDF5 handles are opened
lazily in each worker process (h5py handles cannot be pickled into DataLoader workers).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filter)
import numpy as np
import torch
from torch.utils.data import Dataset

from common.errors import UserError
from data_tools.events import Events
from data_tools.mvsec import SIDES
from data_tools.prepared import file_indices, read_events, read_manifest
from data_tools.voxel import ENCODING_CHANNELS, check_encoding, voxelize

SPLIT_NAMES = ("train", "val", "test", "benchmark")
# Label-preserving augmentations of training crops, each applied to half the examples:
#   vflip: both views and the ground truth upside down (rectified rows stay rows: disparity unchanged);
#   polarity: ON and OFF events swapped (the signed encoding's sign flipped).
# A horizontal flip is not among them: it would need the right view's disparity, which MVSEC and DSEC lack.
AUGMENTATIONS = ("vflip", "polarity")


def valid_disparity(disp_px: np.ndarray, max_disparity_px: float | None = None) -> np.ndarray:
    """Finite, positive and (when a maximum is given) not above it: the pixels every loss and metric may use."""
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(disp_px) & (disp_px > 0)
        return valid if max_disparity_px is None else valid & (disp_px <= max_disparity_px)


def check_max_disparity(manifest: dict, network_max_px: float, where: str, data_dir: Path) -> None:
    """Refuse a network that cannot predict the data's largest disparity: its ground truth would be
    unreachable, and a metric that dropped those pixels would flatter it."""
    data_max = float(manifest.get("max_disparity_in_data_px", 0))
    if network_max_px < data_max:
        raise UserError(f"{where}: the network's maximum disparity is {network_max_px:g} px, but the ground truth "
                        f"in {data_dir} reaches {data_max:g} px; use an architecture with max_disparity_px >= "
                        f"{data_max:g} (a multiple of 24; DSEC's default is 192)")


class StereoEventDataset(Dataset):
    """Examples of one split: dict with left, right (T, C, H, W), disp_px, valid, event_mask, metadata."""

    def __init__(self, prepared_dir: Path | str, split: str, num_bins: int | None = None,
                 encoding: str | None = None, crop: tuple[int, int] | None = None, seed: int = 0,
                 max_examples: int = 0, max_disparity_px: float | None = None, augment: tuple[str, ...] = (),
                 teacher_input: tuple[int, str] | None = None):
        self.prepared_dir = Path(prepared_dir)
        manifest = read_manifest(self.prepared_dir)
        if split not in SPLIT_NAMES:
            raise UserError(f"split '{split}': expected one of {', '.join(SPLIT_NAMES)}")
        self.manifest = manifest
        self.num_bins = int(num_bins if num_bins is not None else manifest["num_bins"])
        self.encoding = encoding if encoding is not None else manifest["encoding"]
        check_encoding(self.encoding)
        if self.num_bins < 1:
            raise UserError(f"num_bins {self.num_bins}: expected at least 1")
        self.in_channels = ENCODING_CHANNELS[self.encoding]
        # A distillation teacher's own input (num_bins, encoding), voxelised from the same events and crop
        # as teacher_left / teacher_right: a twin trained on 5 bins cannot read the student's 2.
        self.teacher_input = None if teacher_input is None else (int(teacher_input[0]), str(teacher_input[1]))
        self.views = {side: (self.num_bins, self.encoding) for side in SIDES}
        if self.teacher_input is not None:
            check_encoding(self.teacher_input[1])
            self.views.update({f"teacher_{side}": self.teacher_input for side in SIDES})
        self.height, self.width = int(manifest["height"]), int(manifest["width"])
        self.window_us = int(manifest["window_ms"]) * 1000
        self.focal_baseline_px_m = float(manifest["focal_baseline_px_m"])
        intr = manifest["intrinsics"]
        self.intrinsics = (float(intr["f"]), float(intr["cx"]), float(intr["cy"]))
        self.max_disparity_px = None if max_disparity_px is None else float(max_disparity_px)
        if crop is not None and (crop[0] > self.height or crop[1] > self.width or min(crop) < 1):
            raise UserError(f"crop {tuple(crop)}: expected 1..{self.height} x 1..{self.width}")
        self.crop = None if crop is None else (int(crop[0]), int(crop[1]))
        if unknown := sorted(set(augment) - set(AUGMENTATIONS)):
            raise UserError(f"augmentation {', '.join(unknown)}: expected any of {', '.join(AUGMENTATIONS)}")
        if augment and crop is None:
            raise UserError("augmentation applies to training crops only: give a crop too")
        self.augment = tuple(augment)
        self.seed = seed
        if split not in manifest["splits"]:
            raise UserError(f"{self.prepared_dir}: has no '{split}' split (the benchmark split comes from "
                            f"prepare_dsec.py with DSEC test sequences)")
        self.examples = [(seq, int(row)) for seq, row in manifest["splits"][split]]
        if max_examples > 0:
            self.examples = self.examples[:max_examples]
        for seq in {seq for seq, _ in self.examples}:
            if not (self.prepared_dir / manifest["sequences"][seq]["file"]).is_file():
                raise UserError(f"{self.prepared_dir / manifest['sequences'][seq]['file']}: prepared file missing")
        self._files: dict[str, h5py.File] = {}
        self._file_index: dict[str, np.ndarray] = {}
        self._rng: np.random.Generator | None = None
        self.epoch = 0
        self._rng_worker: int | None = None

    def __len__(self) -> int:
        return len(self.examples)

    def _file(self, sequence: str) -> h5py.File:
        if sequence not in self._files:
            self._files[sequence] = h5py.File(self.prepared_dir / self.manifest["sequences"][sequence]["file"], "r")
        return self._files[sequence]

    def focal_baseline_of(self, sequence: str) -> float:
        """f*B of one sequence (DSEC sequences carry their own calibration), else the dataset's."""
        return float(self.manifest["sequences"][sequence].get("focal_baseline_px_m", self.focal_baseline_px_m))

    def set_epoch(self, epoch: int) -> None:
        """Seed the crops from (seed, epoch), so a resumed run draws the crops the uninterrupted one drew."""
        self.epoch = epoch
        self._rng = None

    def _random(self) -> np.random.Generator:
        """The crop and augmentation stream; each DataLoader worker has its own, seeded by (seed, epoch)."""
        info = torch.utils.data.get_worker_info()
        worker = -1 if info is None else info.id
        if self._rng is None or self._rng_worker != worker:
            base = [self.seed, self.epoch]
            entropy = base if info is None else [*base, info.id, info.seed % (2**32)]
            self._rng, self._rng_worker = np.random.default_rng(entropy), worker
        return self._rng

    def _crop_origin(self) -> tuple[int, int]:
        rng = self._random()
        return int(rng.integers(0, self.height - self.crop[0] + 1)), int(rng.integers(0, self.width - self.crop[1] + 1))

    def _augmented(self, item: dict) -> dict:
        """The item with each configured augmentation applied with probability 1/2."""
        rng = self._random()
        for name in self.augment:
            if rng.random() >= 0.5:
                continue
            if name == "vflip":
                for key in (*self.views, "disp_px", "valid", "event_mask"):
                    item[key] = item[key].flip(-2)
                continue
            for view, (_, encoding) in self.views.items():
                # (T, C, H, W): the signed encoding's sign, or channel 0 ON and 1 OFF
                item[view] = -item[view] if encoding == "signed" else item[view].flip(-3)
        return item

    def _spikes(self, events: Events, t_end_us: int, y0: int, x0: int, height: int, width: int,
                num_bins: int, encoding: str) -> torch.Tensor:
        x = events.x.astype(np.int64) - x0
        y = events.y.astype(np.int64) - y0
        voxels = voxelize(x, y, events.t_us, events.p, t_end_us - self.window_us, t_end_us, num_bins,
                          height, width, encoding)
        return torch.from_numpy(voxels)

    def __getitem__(self, index: int) -> dict:
        sequence, row = self.examples[index]
        h5 = self._file(sequence)
        t_end_us = int(h5["t_us"][row])
        y0, x0 = (0, 0) if self.crop is None else self._crop_origin()
        height, width = (self.height, self.width) if self.crop is None else self.crop
        window = (slice(y0, y0 + height), slice(x0, x0 + width))
        disp = np.asarray(h5["disp_px"][row], dtype=np.float32)[window]
        valid = valid_disparity(disp, self.max_disparity_px)
        events = {side: read_events(h5[side], row) for side in SIDES}
        item = {view: self._spikes(events[view.removeprefix("teacher_")], t_end_us, y0, x0, height, width, *form)
                for view, form in self.views.items()}
        item.update({
            "disp_px": torch.from_numpy(np.where(valid, disp, 0.0).astype(np.float32)),
            "valid": torch.from_numpy(valid),
            "event_mask": torch.from_numpy(np.asarray(h5["event_mask"][row], dtype=bool)[window].copy()),
            "sequence": sequence,
            "frame_index": int(h5["frame_index"][row]),
            "file_index": int(self._file_index.setdefault(sequence, file_indices(h5))[row]),
            "t_us": t_end_us,
        })
        return self._augmented(item) if self.augment else item

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_files"], state["_file_index"] = {}, {}
        return state

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files = {}
