"""Write a synthetic stereo event recording in the exact DSEC layout (``make_synthetic.py --layout dsec``).

    ROOT/train/<seq>/events/{left,right}/events.h5       x, y (uint16 raw pixel), t (uint32 µs since
                                                         t_offset), p (uint8 0/1), ms_to_idx, t_offset
    ROOT/train/<seq>/events/{left,right}/rectify_map.h5  (480, 640, 2) float32 rectified x, y of each raw pixel
    ROOT/train/<seq>/disparity/event/000000.png, 000002.png, ...   uint16 disparity·256 of the rectified
                                                         left camera, 0 = unknown; 10 Hz, named by the 20 Hz index
    ROOT/train/<seq>/disparity/timestamps.txt             absolute µs of each map, in file order
    ROOT/train/<seq>/calibration/cam_to_cam.yaml          intrinsics, extrinsics, Q (cams_03)
    ROOT/test/<seq>/...                                   events and calibration only
    ROOT/test_disparity_timestamps/<seq>.csv              ``# timestamp_us, file_index`` then ``ts, idx``
    ROOT/manifest.json                                    split, intrinsics, max disparity; written last

The scene is the MVSEC generator's, scaled by the ratio of the rigs' f·B so that every depth gives the
disparity it gives in MVSEC (under 33 px), pitched up a little so the narrower view still sees sky, and
played slower by the ratio of the focal lengths so the image moves as many pixels a second as in MVSEC.
Each camera has its own time base (the right one starts 317 µs later), as real DSEC recordings do, and
a random 30 % of each map's pixels are unknown, as in DSEC's sparse lidar ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import hdf5plugin
import numpy as np
import yaml
from tqdm import tqdm

from common.atomic import atomic_path, write_json_atomic
from common.errors import UserError
from data_tools.dsec import DISPARITY_SCALE, HEIGHT_PX, WIDTH_PX
from data_tools.dsec_files import SYNTHETIC_DSEC_KIND, TIMESTAMPS_FOLDER
from data_tools.event_sim import SensorParams
from data_tools.mvsec import SIDES, SYNTHETIC_MANIFEST
from data_tools.synthetic_camera import (
    MVSEC_CAMERA,
    Camera,
    distortion_maps,
    raw_rays,
    rectified_rays,
    side_radial_k,
)
from data_tools.synthetic_rig import EventArrays, check_timing, rig_frames
from data_tools.synthetic_scene import Scene, make_scene, rectified_view_depth

VERSION = 1
PREFIX = "zurich_city_synthetic_"  # DSEC's submission checker wants Swiss sequence names
TEST_LETTER = "t"
DSEC_CAMERA = Camera(focal=569.8, cx=336.3, cy=222.0, height=HEIGHT_PX, width=WIDTH_PX, baseline=0.6)
SCENE_SCALE = DSEC_CAMERA.focal_baseline / MVSEC_CAMERA.focal_baseline
TILT_RAD = 0.12
SPEED = MVSEC_CAMERA.focal / DSEC_CAMERA.focal  # the image motion (px/s) of the MVSEC recording
T_OFFSET_US = {"left": 49_599_300_523, "right": 49_599_300_840}  # absolute µs of each camera's t = 0
DISPARITY_RATE_HZ = 10
FILE_INDEX_RATE_HZ = 20  # DSEC names disparity maps by the index of the 20 Hz frame camera image
UNKNOWN_FRACTION = 0.3
FIRST_PREDICTION_US = 100_000  # test timestamps start here: every window has 50 ms of events before it
RANDOM_STREAM = 0xD5EC  # keeps the DSEC scenes apart from the MVSEC ones of the same seed
EVENT_CHUNK = 1 << 16
DEFAULT_RADIAL_K = 0.01  # raw pixels move by up to 2 px: the rectify maps are not the identity


@dataclass(frozen=True)
class SequencePlan:
    """One sequence: name, role in the split (train/val/eval/test) and length."""

    name: str
    role: str
    seconds: float

    @property
    def folder(self) -> str:
        return "test" if self.role == "test" else "train"


def sequence_plan(train_sequences: int, seconds: float, eval_seconds: float) -> list[SequencePlan]:
    """Training sequences _a, _b, ..., then one validation and one evaluation sequence, and the test _t."""
    letters = "abcdefghijklmnopqrs"
    if not 1 <= train_sequences <= len(letters) - 2:
        raise UserError(f"--sequences {train_sequences}: expected 1 to {len(letters) - 2} training sequences")
    roles = ["train"] * train_sequences + ["val", "eval"]
    plans = [SequencePlan(PREFIX + letter, role, seconds if role == "train" else eval_seconds)
             for letter, role in zip(letters, roles)]
    return plans + [SequencePlan(PREFIX + TEST_LETTER, "test", eval_seconds)]


def _stream(name: str) -> int:
    if not (name.startswith(PREFIX) and len(name) == len(PREFIX) + 1 and name[-1].islower()):
        raise UserError(f"{name}: not a synthetic DSEC sequence name ({PREFIX}<letter>)")
    return ord(name[-1]) - ord("a")


def sequence_scene(name: str, seed: int) -> tuple[Scene, np.random.Generator]:
    """The scene of a sequence and the random stream that continues into its event simulation."""
    rng = np.random.default_rng([seed, RANDOM_STREAM, _stream(name)])
    return make_scene(rng, DSEC_CAMERA, SCENE_SCALE, TILT_RAD, SPEED), rng


def _disparity(depth: np.ndarray) -> np.ndarray:
    """f·B / depth in float64, NaN where no surface was hit."""
    with np.errstate(divide="ignore"):
        disp = DSEC_CAMERA.focal_baseline / depth.astype(np.float64)
    disp[~np.isfinite(depth)] = np.nan
    return disp


def disparity_png(disparity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint16 disparity·256, 0 where unknown: no surface, and a random UNKNOWN_FRACTION of the pixels."""
    known = np.isfinite(disparity) & (rng.random(disparity.shape) >= UNKNOWN_FRACTION)
    scaled = np.where(known, np.rint(np.nan_to_num(disparity) * DISPARITY_SCALE), 0.0)
    if scaled.max() > np.iinfo(np.uint16).max:
        raise ValueError(f"disparity {scaled.max() / DISPARITY_SCALE:.0f} px does not fit a 16-bit PNG")
    return scaled.astype(np.uint16)


def calibration(radial_k: float) -> dict:
    """cam_to_cam.yaml: cam0/cam3 are the raw left/right event cameras, camRect0/3 the rectified ones.

    The radtan k1 is the first-order inverse of the generator's radial map; rectify_map.h5 is exact."""
    cam = DSEC_CAMERA

    def raw(side: str) -> dict:
        return {"camera_matrix": [cam.focal, cam.focal, cam.cx, cam.cy],
                "distortion_coeffs": [-side_radial_k(side, radial_k), 0.0, 0.0, 0.0],
                "distortion_model": "radtan", "resolution": [cam.width, cam.height]}

    def rect() -> dict:
        return {"camera_matrix": [cam.focal, cam.focal, cam.cx, cam.cy], "resolution": [cam.width, cam.height]}

    def identity(n: int) -> list[list[float]]:
        return np.eye(n).tolist()

    t_30 = identity(4)
    t_30[0][3] = -cam.baseline  # a point in cam0 coordinates, seen from cam3 at +B along x
    q = [[1.0, 0.0, 0.0, -cam.cx], [0.0, 1.0, 0.0, -cam.cy], [0.0, 0.0, 0.0, cam.focal],
         [0.0, 0.0, 1.0 / cam.baseline, 0.0]]
    return {"intrinsics": {"cam0": raw("left"), "cam3": raw("right"), "camRect0": rect(), "camRect3": rect()},
            "extrinsics": {"R_rect0": identity(3), "R_rect3": identity(3), "T_30": t_30},
            "disparity_to_depth": {"cams_03": q}}


def _compact(events: EventArrays, side: str) -> tuple[np.ndarray, ...]:
    """DSEC dtypes in the camera's own time base; events before the camera's t_offset are lost."""
    x, y, t, p = events
    t = t - (T_OFFSET_US[side] - T_OFFSET_US["left"])
    keep = t >= 0
    return (x[keep].astype(np.uint16), y[keep].astype(np.uint16), t[keep].astype(np.uint32),
            (p[keep] > 0).astype(np.uint8))


def ms_to_idx(t: np.ndarray) -> np.ndarray:
    """DSEC's index: entry ms is the first event with t >= ms·1000, one entry per ms to the last event's."""
    n_ms = int(t[-1]) // 1000 + 1 if t.size else 1
    return np.searchsorted(t, np.arange(n_ms, dtype=np.int64) * 1000, side="left").astype(np.uint64)


def write_events(path: Path, columns: list[tuple[np.ndarray, ...]], t_offset: int) -> int:
    """events.h5 of one camera (Blosc zstd, chunked); returns the number of events."""
    x, y, t, p = (np.concatenate(c) for c in zip(*columns))
    compression = hdf5plugin.Blosc(cname="zstd", clevel=1, shuffle=hdf5plugin.Blosc.BITSHUFFLE)
    chunks = (max(1, min(t.size, EVENT_CHUNK)),)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        for key, values in zip("xytp", (x, y, t, p)):
            h5.create_dataset(f"events/{key}", data=values, chunks=chunks, **compression)
        h5.create_dataset("ms_to_idx", data=ms_to_idx(t), **compression)
        h5.create_dataset("t_offset", data=np.int64(t_offset))
    return int(t.size)


def write_rectify_map(path: Path, side: str, radial_k: float) -> None:
    x_map, y_map = distortion_maps(side, radial_k, DSEC_CAMERA)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("rectify_map", data=np.stack([x_map, y_map], axis=-1).astype(np.float32))


def write_png(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", image)  # encode first: the temporary name has no .png for imwrite
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _write_disparity(folder: Path, maps: dict[int, np.ndarray]) -> None:
    """The PNGs and timestamps.txt; removes PNGs a longer earlier run left, which readers would count."""
    event_dir = folder / "event"
    for index, png in maps.items():
        write_png(event_dir / f"{index:06d}.png", png)
    for stale in set(event_dir.glob("*.png")) - {event_dir / f"{index:06d}.png" for index in maps}:
        stale.unlink()
    write_text(folder / "timestamps.txt", "".join(f"{T_OFFSET_US['left'] + _time_us(i)}\n" for i in maps))


def _time_us(file_index: int) -> int:
    return file_index * 1_000_000 // FILE_INDEX_RATE_HZ


def generate_sequence(plan: SequencePlan, out: Path, seed: int, render_hz: int, sensor: SensorParams,
                      radial_k: float, progress: tqdm) -> dict:
    """Render, simulate and write one sequence; returns its manifest entry."""
    scene, rng = sequence_scene(plan.name, seed)
    unknown_rng = np.random.default_rng([seed, RANDOM_STREAM, _stream(plan.name), 1])
    rays = {side: raw_rays(side, radial_k, DSEC_CAMERA) for side in SIDES}
    rect_rays = rectified_rays(DSEC_CAMERA)
    frame_us = 1_000_000 // render_hz
    gt_every_us = 1_000_000 // DISPARITY_RATE_HZ
    events: dict[str, list[tuple[np.ndarray, ...]]] = {side: [] for side in SIDES}
    maps: dict[int, np.ndarray] = {}
    max_disparity = 0.0
    for frame in rig_frames(scene, rays, int(round(plan.seconds * render_hz)), frame_us, sensor, rng):
        for side in SIDES:
            if frame.views[side].events is not None:
                events[side].append(_compact(frame.views[side].events, side))
        if frame.t_us % gt_every_us == 0:
            disparity = _disparity(rectified_view_depth(scene, frame.t_s, "left", rect_rays))
            maps[frame.t_us * FILE_INDEX_RATE_HZ // 1_000_000] = disparity_png(disparity, unknown_rng)
            max_disparity = max(max_disparity, float(np.nanmax(disparity, initial=0.0)))
        progress.update(1)
    root = out / plan.folder / plan.name
    counts = {}
    for side in SIDES:
        counts[side] = write_events(root / "events" / side / "events.h5", events[side], T_OFFSET_US[side])
        write_rectify_map(root / "events" / side / "rectify_map.h5", side, radial_k)
    write_text(root / "calibration" / "cam_to_cam.yaml", yaml.safe_dump(calibration(radial_k), sort_keys=False))
    entry = {"folder": plan.folder, "role": plan.role, "seconds": plan.seconds, "num_events": counts,
             "t_offset_us": T_OFFSET_US}
    if plan.role == "test":
        rows = [f"{T_OFFSET_US['left'] + _time_us(i)}, {i}\n" for i in maps if _time_us(i) >= FIRST_PREDICTION_US]
        write_text(out / TIMESTAMPS_FOLDER / f"{plan.name}.csv", "# timestamp_us, file_index\n" + "".join(rows))
        entry.update(num_test_timestamps=len(rows), scene_max_disparity_px=max_disparity)  # not written
    else:
        _write_disparity(root / "disparity", maps)
        written = max(int(png.max()) for png in maps.values()) / DISPARITY_SCALE
        entry.update(num_disparity_maps=len(maps), max_disparity_px=written)
    return entry


def generate_dsec(out: Path, train_sequences: int = 2, seconds: float = 3.0, eval_seconds: float = 2.0,
                  seed: int = 0, render_hz: int = 80, noise_hz: float = SensorParams.noise_rate_hz,
                  radial_k: float = DEFAULT_RADIAL_K) -> dict:
    """Generate the whole recording; the manifest is written last, so its presence means complete."""
    check_timing(seconds, render_hz, DISPARITY_RATE_HZ)
    check_timing(eval_seconds, render_hz, DISPARITY_RATE_HZ, "--eval-seconds")
    plans = sequence_plan(train_sequences, seconds, eval_seconds)
    distortion_maps("right", radial_k, DSEC_CAMERA)  # a UserError for a too strong --radial-k, before any work
    out = Path(out)
    (out / SYNTHETIC_MANIFEST).unlink(missing_ok=True)  # an earlier recording here is incomplete from now on
    sensor = SensorParams(noise_rate_hz=noise_hz)
    entries = {}
    total = sum(int(round(plan.seconds * render_hz)) + 1 for plan in plans)
    with tqdm(total=total, desc="synthetic dsec", unit="frame") as bar:
        for plan in plans:
            entries[plan.name] = generate_sequence(plan, out, seed, render_hz, sensor, radial_k, bar)
    split = {role: [p.name for p in plans if p.role == role] for role in ("train", "val", "eval")}
    cam = DSEC_CAMERA
    manifest = {
        "kind": SYNTHETIC_DSEC_KIND, "version": VERSION, "split": split, "test": [p.name for p in plans if p.role == "test"],
        "timestamps_dir": TIMESTAMPS_FOLDER, "seed": seed, "seconds": seconds, "eval_seconds": eval_seconds,
        "render_hz": render_hz, "disparity_rate_hz": DISPARITY_RATE_HZ, "file_index_rate_hz": FILE_INDEX_RATE_HZ,
        "disparity_scale": DISPARITY_SCALE, "unknown_fraction": UNKNOWN_FRACTION,
        "resolution": [cam.width, cam.height], "sensor": vars(sensor), "radial_k": radial_k,
        "scene_scale": SCENE_SCALE, "t_offset_us": T_OFFSET_US,
        "intrinsics": {"fx": cam.focal, "fy": cam.focal, "cx": cam.cx, "cy": cam.cy, "baseline_m": cam.baseline,
                       "focal_baseline_px_m": cam.focal_baseline},
        "max_disparity_px": max(e["max_disparity_px"] for e in entries.values() if "max_disparity_px" in e),
        "sequences": entries,
    }
    write_json_atomic(out / SYNTHETIC_MANIFEST, manifest)
    return manifest
