"""Batch-1 3D convolutions: PyTorch's own kernel choice against models.conv.Conv3d's oneDNN route.

Full-frame inference (1 x 260 x 346, eval mode, no grad) of the SNN and its ANN twin built from one
architecture, each with the route on and off, interleaved repeats, medians of this process's CPU time
(steadier than wall time on a shared machine). The twin runs its matching net at batch 1, where
PyTorch's heuristic picks the native slow_conv3d; the SNN folds its T steps into the batch.

    OMP_NUM_THREADS=1 python bench/bench_conv3d.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from bench_network import random_events

import models.conv
from common.paths import SHIPPED_ARCHITECTURE
from data_tools.constants import SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX
from models.arch import load_architecture
from models.stereo_net import SpikingStereoNet

ONEDNN_ROUTE = models.conv.prefers_onednn


def set_route(enabled: bool) -> None:
    models.conv.prefers_onednn = ONEDNN_ROUTE if enabled else (lambda _input, _conv: False)


def cpu_seconds(net: torch.nn.Module, left: torch.Tensor, right: torch.Tensor) -> float:
    start = time.process_time()
    with torch.no_grad():
        net(left, right)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=Path, default=SHIPPED_ARCHITECTURE)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    arch = load_architecture(args.arch)
    torch.manual_seed(0)
    inputs = {ann: [random_events(1, arch.num_bins, SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX, torch.device("cpu"))
                    for _ in range(2)] for ann in (False, True)}
    nets = {ann: SpikingStereoNet(arch, 2, ann=ann).eval() for ann in (False, True)}
    cases = [(ann, route) for ann in (True, False) for route in (False, True)]
    times: dict[tuple[bool, bool], list[float]] = {case: [] for case in cases}
    for repeat in range(args.repeats + 1):  # the first round warms up
        for ann, route in cases:
            set_route(route)
            seconds = cpu_seconds(nets[ann], *inputs[ann])
            if repeat:
                times[(ann, route)].append(seconds)
    set_route(True)
    print(f"CPU s per full-frame inference, median of {args.repeats}, threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}, T = {arch.num_bins}")
    median = {case: statistics.median(values) for case, values in times.items()}
    for ann in (True, False):
        native, routed = median[(ann, False)], median[(ann, True)]
        print(f"{'ANN twin' if ann else 'SNN':10s} PyTorch's choice {native:7.3f}   oneDNN route {routed:7.3f}   "
              f"speed-up {native / routed:5.2f}x")
    for route in (False, True):
        ratio = median[(False, route)] / median[(True, route)]
        print(f"SNN / twin with {'the route' if route else 'PyTorch choice':14s}: {ratio:5.2f} = "
              f"{ratio / arch.num_bins:.2f} T")


if __name__ == "__main__":
    main()
