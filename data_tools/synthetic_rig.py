"""Both cameras of the synthetic rig, frame by frame: render, then simulate events (MVSEC and DSEC writers).

The one loop both layouts share, so they cannot drift apart: per rendered frame the left camera is
rendered and stepped, then the right one, always in that order, because both simulators draw their
noise from one random stream and the MVSEC recording must stay bit-identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from common.errors import UserError
from data_tools.event_sim import EventSimulator, SensorParams
from data_tools.mvsec import SIDES
from data_tools.synthetic_scene import Scene, render

EventArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x, y, t_us (int64, sorted), p (+1/-1)


@dataclass
class View:
    """One camera at one rendered frame: depth of its pixels (inf where nothing), log intensity, events."""

    depth: np.ndarray
    log_intensity: np.ndarray
    events: EventArrays | None  # those since the previous frame; None at frame 0, which only initialises


@dataclass
class RigFrame:
    index: int
    t_us: int
    t_s: float
    views: dict[str, View]


def rig_frames(scene: Scene, rays: dict[str, tuple[np.ndarray, np.ndarray]], num_frames: int, frame_us: int,
               sensor: SensorParams, rng: np.random.Generator) -> Iterator[RigFrame]:
    """Frames 0..num_frames at ``frame_us`` spacing, each camera seen through its own (raw) rays."""
    sims: dict[str, EventSimulator] = {}
    for frame in range(num_frames + 1):
        t_us = frame * frame_us
        t_s = t_us * 1e-6
        views = {}
        for side in SIDES:
            depth, log_i = render(scene, *scene.camera_pose(t_s, side), *rays[side])
            if frame == 0:
                sims[side] = EventSimulator(log_i, 0, sensor, rng)
                events = None
            else:
                events = sims[side].step(log_i, t_us)
            views[side] = View(depth, log_i, events)
        yield RigFrame(frame, t_us, t_s, views)


def check_timing(seconds: float, render_hz: int, rate_hz: int, option: str = "--seconds") -> None:
    """UserError unless the sequence is long enough and whole frames land on every ground-truth time."""
    if seconds < 0.2:
        raise UserError(f"{option} {seconds}: expected at least 0.2")
    if render_hz <= 0 or render_hz % rate_hz or 1_000_000 % render_hz:
        raise UserError(f"--render-hz {render_hz}: expected a multiple of {rate_hz} that divides 1e6")
