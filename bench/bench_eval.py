"""Evaluation costs side by side: SGBM vs SNN vs ANN twin per 260x346 example, and op counting vs inference.

All on the same random binary events (T = 5, 2 polarity channels, about 5 % of pixels active per bin),
networks from the shipped architecture with BN shifted so that layers fire at about 25 % (as trained ones).
Reports seconds per example (median of the repeats, interleaved so a busy machine slows all alike),
windows per second, and the ratios: SNN / SGBM time, SNN / ANN time, and the energy count's time over
the SNN's plain inference time (what eval/energy.py costs per counted example).

    python bench/bench_eval.py                 # 3 repeats on the default device
    python bench/bench_eval.py --repeats 5 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn

from common.paths import SHIPPED_ARCHITECTURE
from data_tools.constants import SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX
from eval.energy_report import energy_rows, totals
from eval.opcount import count_operations
from eval.sgbm import SGBMParams, count_image, sgbm_disparity
from models.arch import load_architecture
from models.stereo_net import SpikingStereoNet
from stereo.runtime import resolve_device

STEPS = 5
DENSITY = 0.05
BN_SHIFT = 0.24  # BN bias that makes the untrained layers fire at about 25 % (SPEC §9: trained nets 20-30 %)


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    arch = load_architecture(SHIPPED_ARCHITECTURE)
    nets = {}
    for ann in (False, True):
        net = SpikingStereoNet(arch, 2, ann=ann).eval()
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                m.bias.data.fill_(BN_SHIFT)
        nets["ANN twin" if ann else "SNN"] = net.to(device)
    shape = (1, STEPS, 2, SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX)
    left, right = ((torch.rand(shape) < DENSITY).float().to(device) for _ in range(2))
    left_u8, right_u8 = (count_image(v.cpu().numpy()) for v in (left, right))
    params = SGBMParams()

    def infer(name: str):
        return lambda: nets[name](left, right)

    jobs = {
        "SGBM (CPU)": lambda: sgbm_disparity(left_u8, right_u8, params),
        "SNN": infer("SNN"),
        "ANN twin": infer("ANN twin"),
        "SNN op count": lambda: count_operations(nets["SNN"], [(left, right)]),
    }
    times: dict[str, list[float]] = {name: [] for name in jobs}
    with torch.no_grad():
        for name in ("SNN", "ANN twin"):
            nets[name](left, right)  # warm-up
        for _ in range(args.repeats):
            for name, job in jobs.items():
                times[name].append(timed(job, device))
    median = {name: statistics.median(t) for name, t in times.items()}
    rows = energy_rows(count_operations(nets["SNN"], [(left, right)]), 0.9, 4.6)
    rates = [r["input_rate"] for r in rows if r["input_rate"] is not None and r["synops"] > 0]
    print(f"device {device}, {SENSOR_HEIGHT_PX}x{SENSOR_WIDTH_PX}, T={STEPS}, {args.repeats} repeats (median)")
    print(f"{'job':<14} {'s/example':>10} {'examples/s':>11}")
    for name, seconds in median.items():
        print(f"{name:<14} {seconds:>10.3f} {1 / seconds:>11.2f}")
    print(f"SNN / SGBM time: {median['SNN'] / median['SGBM (CPU)']:.1f}x; SNN / ANN twin time: "
          f"{median['SNN'] / median['ANN twin']:.2f}x; op count / SNN inference: "
          f"{median['SNN op count'] / median['SNN']:.1f}x")
    print(f"(SNN energy at these rates: {totals(rows)['energy_mj']:.2f} mJ, median input spike rate "
          f"{100 * float(np.median(rates)):.1f}%)")


if __name__ == "__main__":
    main()
