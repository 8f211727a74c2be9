"""Write a synthetic stereo event recording in the exact MVSEC layout (SPEC §2, §4).

    python data_tools/make_synthetic.py --out data/synthetic --sequences 3 --seconds 6 --seed 0

Per sequence: ``<name>_data.hdf5`` (events, frames, IMU of both cameras), ``<name>_gt.hdf5``
(depth at 20 Hz, poses); once per recording: the four ``<family>_{left,right}_{x,y}_map.txt``
rectification maps (mild radial distortion) and ``manifest.json`` with the split (SPEC §2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from common.atomic import atomic_path, write_json_atomic
from common.errors import UserError, run_cli
from common.paths import DEFAULT_SYNTHETIC_RAW_DIR
from data_tools.constants import (
    BASELINE_M,
    CX_PX,
    CY_PX,
    DEPTH_RATE_HZ,
    FOCAL_BASELINE_PX_M,
    FOCAL_PX,
    SENSOR_HEIGHT_PX,
    SENSOR_WIDTH_PX,
)
from data_tools.event_sim import EventSimulator, SensorParams
from data_tools.mvsec import SIDES, SYNTHETIC_KIND, SYNTHETIC_MANIFEST
from data_tools.synthetic_scene import Scene, make_scene, rectified_rays, render

FAMILY = "synthetic_flying"
START_UNIX_S = 1506117900.0  # MVSEC-like absolute timestamps (float64 seconds)
RIGHT_DISTORTION_RATIO = -0.7  # the right lens distorts the other way, a little less
VERSION = 1


def distortion_maps(side: str, radial_k: float) -> tuple[np.ndarray, np.ndarray]:
    """x/y maps (260, 346): rectified coordinate of each raw pixel; identity for radial_k = 0.

    With radial_k != 0 the rounding of SPEC §2 moves events by up to 0.5 px with a phase that
    drifts slowly across the image, differently in each camera: the same sub-pixel bias real
    recordings carry, which caps how well any matcher can agree with the ground truth."""
    ys, xs = np.mgrid[0:SENSOR_HEIGHT_PX, 0:SENSOR_WIDTH_PX].astype(np.float64)
    r2 = ((xs - CX_PX) ** 2 + (ys - CY_PX) ** 2) / FOCAL_PX**2
    scale = 1.0 + radial_k * (RIGHT_DISTORTION_RATIO if side == "right" else 1.0) * r2
    return CX_PX + (xs - CX_PX) * scale, CY_PX + (ys - CY_PX) * scale


def raw_rays(side: str, radial_k: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised rays of the raw pixels: through the rectified coordinates the maps give."""
    x_map, y_map = distortion_maps(side, radial_k)
    return ((x_map - CX_PX) / FOCAL_PX).astype(np.float32), ((y_map - CY_PX) / FOCAL_PX).astype(np.float32)


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
    scene, _ = sequence_scene(name, seed)
    depth, _ = render(scene, *scene.camera_pose(t_s, side), *rectified_rays(), with_intensity=False)
    return depth


def generate_sequence(name: str, out: Path, seconds: float, seed: int, render_hz: int,
                      sensor: SensorParams, radial_k: float, progress: tqdm) -> dict:
    """Render, simulate and write one sequence; returns its manifest entry."""
    scene, rng = sequence_scene(name, seed)
    rays = {side: raw_rays(side, radial_k) for side in SIDES}
    rect_x, rect_y = rectified_rays()
    num_frames = int(round(seconds * render_hz))
    frame_us = 1_000_000 // render_hz
    depth_every = render_hz // DEPTH_RATE_HZ
    sims: dict[str, EventSimulator] = {}
    events: dict[str, list[np.ndarray]] = {side: [] for side in SIDES}
    images: dict[str, list[np.ndarray]] = {side: [] for side in SIDES}
    image_inds: dict[str, list[int]] = {side: [] for side in SIDES}
    counts = dict.fromkeys(SIDES, 0)
    depth_rect, depth_raw, poses, depth_ts = [], [], [], []
    for frame in range(num_frames + 1):
        t_us = frame * frame_us
        t_s = t_us * 1e-6
        for side in SIDES:
            rot, centre = scene.camera_pose(t_s, side)
            view_depth, log_i = render(scene, rot, centre, *rays[side])
            if side == "left":
                left_raw_depth = view_depth
            if frame == 0:
                sims[side] = EventSimulator(log_i, 0, sensor, rng)
            else:
                x, y, t, p = sims[side].step(log_i, t_us)
                events[side].append(np.stack([x, y, START_UNIX_S + t * 1e-6, p], axis=1))
                counts[side] += x.size
            if frame % depth_every == 0:
                images[side].append(np.clip(np.exp(log_i) * 255, 0, 255).astype(np.uint8))
                image_inds[side].append(counts[side])
        if frame % depth_every == 0:
            rot, centre = scene.pose(t_s)
            raw = left_raw_depth
            rect = raw if radial_k == 0 else render(scene, rot, centre, rect_x, rect_y, with_intensity=False)[0]
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_SYNTHETIC_RAW_DIR, help="output folder")
    parser.add_argument("--sequences", type=int, default=3, help="number of sequences (at least 2: train + eval)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each sequence")
    parser.add_argument("--seed", type=int, default=0, help="random seed (output is deterministic for a seed)")
    parser.add_argument("--render-hz", type=int, default=80, help="rendered frames per second (multiple of 20)")
    parser.add_argument("--radial-k", type=float, default=0.0,
                        help="lens distortion of the raw cameras (0: identity maps; e.g. 0.01 for a mild one)")
    parser.add_argument("--noise-hz", type=float, default=SensorParams.noise_rate_hz, help="background events per pixel per second")
    return parser


def generate(out: Path, sequences: int = 3, seconds: float = 4.0, seed: int = 0, render_hz: int = 80,
             noise_hz: float = SensorParams.noise_rate_hz, radial_k: float = 0.0) -> dict:
    """Generate the whole recording; the manifest is written last, so its presence means complete."""
    if sequences < 2:
        raise UserError(f"--sequences {sequences}: expected at least 2 (training and evaluation)")
    if seconds < 0.2:
        raise UserError(f"--seconds {seconds}: expected at least 0.2")
    if render_hz <= 0 or render_hz % DEPTH_RATE_HZ or 1_000_000 % render_hz:
        raise UserError(f"--render-hz {render_hz}: expected a multiple of {DEPTH_RATE_HZ} that divides 1e6")
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
    generate(args.out, args.sequences, args.seconds, args.seed, args.render_hz, args.noise_hz, args.radial_k)
    print(f"wrote {args.sequences} synthetic sequences to {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
