"""Write a synthetic stereo event recording in the exact MVSEC layout (SPEC §2, §4), or DSEC's.

    python data_tools/make_synthetic.py --out data/synthetic --sequences 3 --seconds 6 --seed 0
    python data_tools/make_synthetic.py --layout dsec      # data/synthetic_dsec, see synthetic_dsec.py

MVSEC, per sequence: ``<name>_data.hdf5`` (events, frames, IMU of both cameras), ``<name>_gt.hdf5``
(depth at 20 Hz, poses); once per recording: the four ``<family>_{left,right}_{x,y}_map.txt``
rectification maps (mild radial distortion) and ``manifest.json`` with the split (SPEC §2).

DSEC (640x480): training sequences zurich_city_synthetic_a, _b, ... (--sequences of them, --seconds
long), then one validation and one evaluation sequence (the next letters: _c, _d by default) and the
test sequence _t (--eval-seconds long each), in DSEC's train/ and test/ folders with its events.h5,
rectify maps, 16-bit disparity PNGs at 10 Hz, timestamps and cam_to_cam.yaml. The defaults
(2 x 3 s + 3 x 2 s rendered at 80 Hz) take about 50 s on two cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from common.atomic import atomic_path, write_json_atomic
from common.errors import UserError, run_cli
from common.paths import DEFAULT_SYNTHETIC_DSEC_DIR, DEFAULT_SYNTHETIC_RAW_DIR
from data_tools.constants import (
    BASELINE_M,
    CX_PX,
    CY_PX,
    DEPTH_RATE_HZ,
    FOCAL_BASELINE_PX_M,
    FOCAL_PX,
)
from data_tools.event_sim import SensorParams
from data_tools.mvsec import SIDES, SYNTHETIC_KIND, SYNTHETIC_MANIFEST
from data_tools.synthetic_camera import distortion_maps, raw_rays, rectified_rays
from data_tools.synthetic_dsec import DEFAULT_RADIAL_K, generate_dsec
from data_tools.synthetic_rig import check_timing, rig_frames
from data_tools.synthetic_scene import Scene, make_scene, rectified_view_depth

FAMILY = "synthetic_flying"
START_UNIX_S = 1506117900.0  # MVSEC-like absolute timestamps (float64 seconds)
VERSION = 1


def sequence_names(count: int) -> list[str]:
    return [f"{FAMILY}{i + 1}" for i in range(count)]


def _imu(scene: Scene, times_s: np.ndarray) -> np.ndarray:
    """(M, 6) accelerometer (m/s², with gravity along world +y) and gyro (rad/s) in the camera frame."""
    dt = 1e-3
    out = np.zeros((times_s.size, 6))
    for i, t in enumerate(times_s):
        (_, p0), (r1, p1), (r2, p2) = (scene.pose(t - dt), scene.pose(t), scene.pose(t + dt))
        accel = (p2 - 2 * p1 + p0) / dt**2 - np.array([0.0, 9.81, 0.0])
        delta = r1.T @ r2
        omega = np.array([delta[2, 1] - delta[1, 2], delta[0, 2] - delta[2, 0], delta[1, 0] - delta[0, 1]]) / (2 * dt)
        out[i, :3], out[i, 3:] = r1.T @ accel, omega
    return out


def sequence_scene(name: str, seed: int) -> tuple[Scene, np.random.Generator]:
    """The scene of a sequence and the random stream that continues into its event simulation."""
    rng = np.random.default_rng([seed, int(name[len(FAMILY):])])
    return make_scene(rng), rng


def rectified_depth(name: str, seed: int, t_s: float, side: str) -> np.ndarray:
    """Ground-truth depth of either camera on the rectified grid (inf where nothing), for checks."""
    return rectified_view_depth(sequence_scene(name, seed)[0], t_s, side)


def generate_sequence(name: str, out: Path, seconds: float, seed: int, render_hz: int,
                      sensor: SensorParams, radial_k: float, progress: tqdm) -> dict:
    """Render, simulate and write one sequence; returns its manifest entry."""
    scene, rng = sequence_scene(name, seed)
    rays = {side: raw_rays(side, radial_k) for side in SIDES}
    rect_rays = rectified_rays()
    num_frames = int(round(seconds * render_hz))
    frame_us = 1_000_000 // render_hz
    depth_every = render_hz // DEPTH_RATE_HZ
    events: dict[str, list[np.ndarray]] = {side: [] for side in SIDES}
    images: dict[str, list[np.ndarray]] = {side: [] for side in SIDES}
    image_inds: dict[str, list[int]] = {side: [] for side in SIDES}
    counts = dict.fromkeys(SIDES, 0)
    depth_rect, depth_raw, poses, depth_ts = [], [], [], []
    for frame in rig_frames(scene, rays, num_frames, frame_us, sensor, rng):
        keyframe = frame.index % depth_every == 0
        for side in SIDES:
            view = frame.views[side]
            if view.events is not None:
                x, y, t, p = view.events
                events[side].append(np.stack([x, y, START_UNIX_S + t * 1e-6, p], axis=1))
                counts[side] += x.size
            if keyframe:
                images[side].append(np.clip(np.exp(view.log_intensity) * 255, 0, 255).astype(np.uint8))
                image_inds[side].append(counts[side])
        if keyframe:
            t_s = frame.t_s
            rot, centre = scene.pose(t_s)
            raw = frame.views["left"].depth
            rect = raw if radial_k == 0 else rectified_view_depth(scene, t_s, "left", rect_rays)
            depth_rect.append(np.where(np.isinf(rect), np.nan, rect))
            depth_raw.append(np.where(np.isinf(raw), np.nan, raw))
            pose = np.eye(4)
            pose[:3, :3], pose[:3, 3] = rot, centre
            poses.append(pose)
            depth_ts.append(START_UNIX_S + t_s)
        progress.update(1)
    frame_ts = np.asarray(depth_ts)
    imu_times = np.arange(num_frames + 1) * frame_us * 1e-6
    imu = _imu(scene, imu_times)
    data_path, gt_path = out / f"{name}_data.hdf5", out / f"{name}_gt.hdf5"
    with atomic_path(data_path) as tmp, h5py.File(tmp, "w") as h5:
        for side in SIDES:
            group = h5.create_group(f"davis/{side}")
            all_events = np.concatenate(events[side]) if events[side] else np.zeros((0, 4))
            group.create_dataset("events", data=all_events.astype(np.float64))  # contiguous, as MVSEC
            group.create_dataset("image_raw", data=np.stack(images[side]), compression="gzip", compression_opts=1)
            group.create_dataset("image_raw_ts", data=frame_ts)
            group.create_dataset("image_raw_event_inds", data=np.asarray(image_inds[side], dtype=np.int64))
            group.create_dataset("imu", data=imu)
            group.create_dataset("imu_ts", data=START_UNIX_S + imu_times)
    with atomic_path(gt_path) as tmp, h5py.File(tmp, "w") as h5:
        group = h5.create_group("davis/left")
        group.create_dataset("depth_image_rect", data=np.stack(depth_rect).astype(np.float32))
        group.create_dataset("depth_image_rect_ts", data=frame_ts)
        group.create_dataset("depth_image_raw", data=np.stack(depth_raw).astype(np.float32),  # not read by prepare
                             compression="gzip", compression_opts=1)
        group.create_dataset("depth_image_raw_ts", data=frame_ts)
        group.create_dataset("pose", data=np.stack(poses))
        group.create_dataset("pose_ts", data=frame_ts)
    return {"data": data_path.name, "gt": gt_path.name, "num_depth_frames": len(depth_ts),
            "num_events": {side: counts[side] for side in SIDES}}


# Per-layout defaults of the options whose meaning or default differs (None on the command line).
LAYOUT_DEFAULTS = {
    "mvsec": {"out": DEFAULT_SYNTHETIC_RAW_DIR, "sequences": 3, "seconds": 4.0, "radial_k": 0.0},
    "dsec": {"out": DEFAULT_SYNTHETIC_DSEC_DIR, "sequences": 2, "seconds": 3.0, "radial_k": DEFAULT_RADIAL_K},
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mvsec, dsec = LAYOUT_DEFAULTS["mvsec"], LAYOUT_DEFAULTS["dsec"]
    parser.add_argument("--layout", choices=sorted(LAYOUT_DEFAULTS), default="mvsec", help="dataset layout to write")
    parser.add_argument("--out", type=Path, help=f"output folder (default {mvsec['out']}; dsec: {dsec['out']})")
    parser.add_argument("--sequences", type=int,
                        help=f"mvsec: number of sequences, at least 2: train + eval (default {mvsec['sequences']}); "
                             f"dsec: number of training sequences, besides one val, one eval, one test "
                             f"(default {dsec['sequences']})")
    parser.add_argument("--seconds", type=float,
                        help=f"length of each (dsec: each training) sequence (default {mvsec['seconds']}; "
                             f"dsec: {dsec['seconds']})")
    parser.add_argument("--eval-seconds", type=float, default=2.0,
                        help="dsec only: length of the val, eval and test sequences")
    parser.add_argument("--seed", type=int, default=0, help="random seed (output is deterministic for a seed)")
    parser.add_argument("--render-hz", type=int, default=80,
                        help="rendered frames per second (multiple of 20; dsec: of 10)")
    parser.add_argument("--radial-k", type=float,
                        help="lens distortion of the raw cameras (0: identity maps; e.g. 0.01 for a mild one; "
                             f"default {mvsec['radial_k']}; dsec: {dsec['radial_k']})")
    parser.add_argument("--noise-hz", type=float, default=SensorParams.noise_rate_hz, help="background events per pixel per second")
    return parser


def generate(out: Path, sequences: int = 3, seconds: float = 4.0, seed: int = 0, render_hz: int = 80,
             noise_hz: float = SensorParams.noise_rate_hz, radial_k: float = 0.0) -> dict:
    """Generate the whole recording; the manifest is written last, so its presence means complete."""
    if sequences < 2:
        raise UserError(f"--sequences {sequences}: expected at least 2 (training and evaluation)")
    check_timing(seconds, render_hz, DEPTH_RATE_HZ)
    out = Path(out)
    names = sequence_names(sequences)
    maps = {}
    for side in SIDES:
        for axis, values in zip("xy", distortion_maps(side, radial_k)):
            path = out / f"{FAMILY}_{side}_{axis}_map.txt"
            with atomic_path(path) as tmp:
                np.savetxt(tmp, values, fmt="%.5f")
            maps[f"{side}_{axis}"] = path.name
    sensor = SensorParams(noise_rate_hz=noise_hz)
    entries = {}
    with tqdm(total=sequences * (int(round(seconds * render_hz)) + 1), desc="synthetic", unit="frame") as bar:
        for name in names:
            entries[name] = generate_sequence(name, out, seconds, seed, render_hz, sensor, radial_k, bar)
    manifest = {
        "kind": SYNTHETIC_KIND, "version": VERSION, "family": FAMILY, "sequences": names,
        "files": entries, "maps": maps,
        "split": {"train": names[1:], "eval": names[0], "val_fraction": 0.2, "shuffle_seed": 0, "drop_first_windows": 1},
        "seed": seed, "seconds": seconds, "render_hz": render_hz, "start_unix_s": START_UNIX_S,
        "sensor": vars(sensor), "radial_k": radial_k,
        "intrinsics": {"f": FOCAL_PX, "cx": CX_PX, "cy": CY_PX, "baseline_m": BASELINE_M,
                       "focal_baseline_px_m": FOCAL_BASELINE_PX_M["indoor_flying"]},
    }
    write_json_atomic(out / SYNTHETIC_MANIFEST, manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for key, default in LAYOUT_DEFAULTS[args.layout].items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    if args.layout == "dsec":
        manifest = generate_dsec(args.out, args.sequences, args.seconds, args.eval_seconds, args.seed,
                                 args.render_hz, args.noise_hz, args.radial_k)
        count = len(manifest["sequences"])
        print(f"wrote {count} synthetic DSEC sequences to {args.out} "
              f"(max disparity {manifest['max_disparity_px']:.1f} px)")
        return 0
    generate(args.out, args.sequences, args.seconds, args.seed, args.render_hz, args.noise_hz, args.radial_k)
    print(f"wrote {args.sequences} synthetic sequences to {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
