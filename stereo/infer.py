"""Run a checkpoint on a raw recording without ground truth, window by window: an MVSEC-layout sequence,
or a DSEC sequence folder (``--dsec-sequence DIR`` with ``events/{left,right}/`` and ``calibration/``).

    python stereo/infer.py [--checkpoint runs/train/best.pt] [--mvsec-root data/synthetic]
        [--sequence NAME] [--rate-hz 20] [--window-ms 50] [--max-windows 0] [--video] [--png] [--out runs/infer]
    python stereo/infer.py --checkpoint runs/train_dsec/best.pt --dsec-sequence ~/dsec/test/zurich_city_13_a

Writes <out>/<sequence>_disparity.hdf5 with ``disparity_px`` and ``depth_m`` (N, H, W) float32 (MVSEC 260 x 346,
DSEC 480 x 640),
``t_us`` (N,) window ends in microseconds since the recording start and ``t_s`` (N,) absolute seconds;
with --video a colourised <sequence>_disparity.mp4, with --png a <sequence>_png/ folder of frames.
Every output is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import time
from pathlib import Path

import cv2
import h5py
import hdf5plugin
import numpy as np
import torch
from tqdm import tqdm

from common import paths
from common.atomic import atomic_output
from common.errors import UserError, run_cli
from data_tools.constants import (
    FOCAL_BASELINE_PX_M,
    MAX_DISPARITY_IN_DATA_PX,
    SENSOR_HEIGHT_PX,
    SENSOR_WIDTH_PX,
    WINDOW_MS,
    disparity_to_depth,
)
from data_tools.dsec import HEIGHT_PX as DSEC_HEIGHT_PX
from data_tools.dsec import WIDTH_PX as DSEC_WIDTH_PX
from data_tools.dsec import read_calibration
from data_tools.dsec_files import sequence_folder_files
from data_tools.mvsec import find_sequence_files, read_synthetic_manifest
from data_tools.raw_windows import count_dsec_windows, count_raw_windows, iter_dsec_windows, iter_raw_windows
from stereo.checkpoint import load_model_from_checkpoint
from stereo.config import add_config_arguments, start_cli


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Disparity and depth for every window of a raw recording.")
    parser.add_argument("--checkpoint", type=Path, default=paths.DEFAULT_TRAIN_DIR / paths.BEST_CHECKPOINT_NAME)
    parser.add_argument("--mvsec-root", type=Path, default=paths.DEFAULT_SYNTHETIC_RAW_DIR,
                        help="folder with <sequence>_data.hdf5 and the rectification maps")
    parser.add_argument("--sequence", default=None,
                        help="sequence name, e.g. indoor_flying1 (default: a synthetic recording's evaluation sequence)")
    parser.add_argument("--dsec-sequence", type=Path, default=None,
                        help="a DSEC sequence folder instead of an MVSEC recording (its calibration gives f*B)")
    parser.add_argument("--rate-hz", type=float, default=20.0, help="windows per second of recording")
    parser.add_argument("--window-ms", type=float, default=float(WINDOW_MS), help="events per window (ms)")
    parser.add_argument("--max-windows", type=int, default=0, help="stop after this many windows (0 = all)")
    parser.add_argument("--video", action="store_true", help="also write a colourised MP4")
    parser.add_argument("--png", action="store_true", help="also write a colourised PNG per window")
    parser.add_argument("--out", type=Path, default=paths.DEFAULT_INFER_DIR)
    add_config_arguments(parser)
    return parser.parse_args(argv)


def default_sequence(root: Path) -> str:
    synthetic = read_synthetic_manifest(root) if root.is_dir() else None
    if synthetic is None:
        raise UserError(f"--sequence is required for the recording in {root} (e.g. --sequence indoor_flying1)")
    return synthetic["split"]["eval"]


def focal_baseline(root: Path, sequence: str) -> float:
    """f*B of the recording: the synthetic manifest's, else the MVSEC family's (SPEC §2)."""
    synthetic = read_synthetic_manifest(root)
    if synthetic is not None:
        return float(synthetic["intrinsics"]["focal_baseline_px_m"])
    return FOCAL_BASELINE_PX_M[find_sequence_files(root, sequence, need_gt=False).family]


def colourise(disp_px: np.ndarray, max_disp_px: float) -> np.ndarray:
    """BGR uint8 image of a disparity map on a fixed scale (0 .. max_disp_px), the panels' colour map."""
    scaled = np.clip(disp_px / max_disp_px * 255.0, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(scaled, cv2.COLORMAP_MAGMA)


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove the folders this run created (deepest first) if they are still empty."""
    for folder in folders:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


class DisparityWriter:
    """Appends one window at a time to resizable HDF5 datasets (and optional video / PNG frames)."""

    def __init__(self, h5_path: Path, height: int, width: int, video_path: Path | None, png_dir: Path | None,
                 fps: float, attrs: dict) -> None:
        self.h5 = h5py.File(h5_path, "w")
        self.h5.attrs.update(attrs)
        compression = dict(hdf5plugin.Blosc(cname="zstd", clevel=3, shuffle=hdf5plugin.Blosc.SHUFFLE))
        for name in ("disparity_px", "depth_m"):
            self.h5.create_dataset(name, shape=(0, height, width), maxshape=(None, height, width), dtype="f4",
                                   chunks=(1, height, width), **compression)
        self.h5.create_dataset("t_us", shape=(0,), maxshape=(None,), dtype="i8")
        self.h5.create_dataset("t_s", shape=(0,), maxshape=(None,), dtype="f8")
        self.video = None
        if video_path is not None:
            self.video = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            if not self.video.isOpened():
                raise UserError(f"--video: OpenCV cannot write MP4 (mp4v) to {video_path}")
        self.png_dir = png_dir
        self.count = 0

    def append(self, disp_px: np.ndarray, depth_m: np.ndarray, t_us: int, t_s: float, max_disp_px: float) -> None:
        n = self.count
        for name, value in (("disparity_px", disp_px), ("depth_m", depth_m), ("t_us", t_us), ("t_s", t_s)):
            self.h5[name].resize(n + 1, axis=0)
            self.h5[name][n] = value
        if self.video is not None or self.png_dir is not None:
            image = colourise(disp_px, max_disp_px)
            if self.video is not None:
                self.video.write(image)
            if self.png_dir is not None:
                cv2.imwrite(str(self.png_dir / f"{n:06d}.png"), image)
        self.count += 1

    def close(self) -> None:
        self.h5.close()
        if self.video is not None:
            self.video.release()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _, device = start_cli(args)
    if args.max_windows < 0:
        raise UserError(f"--max-windows {args.max_windows}: expected 0 (all) or a positive number")
    model, ckpt = load_model_from_checkpoint(args.checkpoint, device, "--checkpoint")
    num_bins, encoding = int(ckpt["num_bins"]), ckpt["encoding"]
    if args.dsec_sequence is not None:
        root, sequence = args.dsec_sequence, Path(args.dsec_sequence).name
        fb = read_calibration(sequence_folder_files(root).calibration).focal_baseline_px_m
        height, width, max_disp = DSEC_HEIGHT_PX, DSEC_WIDTH_PX, float(model.max_disp)
        total = count_dsec_windows(root, args.rate_hz, args.window_ms)
        windows = iter_dsec_windows(root, args.rate_hz, args.window_ms, num_bins, encoding)
    else:
        root = args.mvsec_root
        sequence = args.sequence or default_sequence(root)
        fb = focal_baseline(root, sequence)
        height, width, max_disp = SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX, float(MAX_DISPARITY_IN_DATA_PX)
        total = count_raw_windows(root, sequence, args.rate_hz, args.window_ms)
        windows = iter_raw_windows(root, sequence, args.rate_hz, args.window_ms, num_bins, encoding)
    if args.max_windows:
        total = min(total, args.max_windows)
    if total == 0:
        raise UserError(f"--sequence {sequence}: no complete {args.window_ms:g} ms window in the recording")
    h5_final = args.out / f"{sequence}_disparity.hdf5"
    video_final = args.out / f"{sequence}_disparity.mp4"
    png_final = args.out / f"{sequence}_png"
    attrs = {"checkpoint": str(args.checkpoint), "sequence": sequence, "recording": str(root), "rate_hz": args.rate_hz,
             "window_ms": args.window_ms, "focal_baseline_px_m": fb, "num_bins": num_bins, "encoding": encoding,
             "ann": bool(ckpt["ann"])}
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out}: exists and is not a folder")
    created = [d for d in (args.out, *args.out.parents) if not d.exists()]
    with contextlib.ExitStack() as stack:  # on success: writer closed first, then every output renamed
        stack.callback(remove_empty_folders, created)  # a failed run leaves no empty --out behind
        h5_tmp = stack.enter_context(atomic_output(h5_final))
        video_tmp = stack.enter_context(atomic_output(video_final)) if args.video else None
        png_tmp = stack.enter_context(atomic_output(png_final, folder=True)) if args.png else None
        writer = DisparityWriter(h5_tmp, height, width, video_tmp, png_tmp, args.rate_hz, attrs)
        stack.callback(writer.close)
        start = time.perf_counter()
        with torch.inference_mode(), tqdm(total=total, desc=f"infer {sequence}", unit="window") as bar:
            for window in itertools.islice(windows, total):
                left, right = (torch.from_numpy(window[side])[None].to(device) for side in ("left", "right"))
                disp = model(left, right)[0].float().cpu().numpy()
                writer.append(disp, disparity_to_depth(disp, fb).astype(np.float32), window["t_us"], window["t_s"],
                              max_disp)
                bar.update(1)
        elapsed = time.perf_counter() - start
    print(f"{writer.count} windows in {elapsed:.1f} s: {writer.count / elapsed:.2f} windows/s on {device}")
    print(f"wrote {h5_final}" + (f", {video_final}" if args.video else "") + (f", {png_final}/" if args.png else ""))
    return 0


if __name__ == "__main__":
    run_cli(main)
