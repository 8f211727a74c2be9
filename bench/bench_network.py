"""SNN vs its ANN twin: training step and inference time per example, and peak memory.

Both networks are built from the same architecture file (default: the shipped MVSEC one) and run on
the same random binary events (T steps, 2 polarity channels, about 5 % of pixels active per bin).
Inference: full 260 x 346 frames, eval mode, no grad. Training step: forward + smooth-L1 backward +
Adam step on a batch of crops. Dense simulation costs the SNN about T times its twin; the goal is at
most 1.2 T. Repeats are interleaved (SNN, ANN, SNN, ...) so a busy machine slows both alike; medians
of wall time and of this process's CPU time (steadier when other jobs share the cores).
Peak memory of one inference / training step: CUDA max_memory_allocated, or on CPU the growth of
ru_maxrss in a fresh process (torch's CPU allocator is invisible to tracemalloc).

    python bench/bench_network.py                       # 260x346 inference, 96x144 crops x2 training, 3 repeats
    python bench/bench_network.py --crop 192 288 --batch 2 --repeats 5 --device cuda
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common.paths import SHIPPED_ARCHITECTURE
from data_tools.constants import SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX
from models.arch import load_architecture
from models.stereo_net import SpikingStereoNet
from stereo.runtime import resolve_device


def random_events(batch: int, steps: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    return (torch.rand(batch, steps, 2, height, width, device=device) < 0.05).float()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> tuple[float, float]:
    """(wall s, CPU s of this process summed over threads): CPU time is steadier on a shared machine."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def infer_once(net, left, right, device) -> tuple[float, float]:
    net.eval()
    with torch.no_grad():
        return timed(lambda: net(left, right), device)


def train_once(net, optimizer, left, right, device) -> tuple[float, float]:
    net.train()
    target = torch.rand(left.shape[0], *left.shape[-2:], device=device) * 40

    def step() -> None:
        loss = F.smooth_l1_loss(net(left, right), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return timed(step, device)


def peak_memory_mib(arch_path: Path, ann: bool, kind: str, steps: int, crop, batch: int, device: torch.device) -> float:
    """Peak memory of one inference or training step: CUDA allocator peak, or on CPU the growth of the
    peak RSS (ru_maxrss) of a fresh process, measured after the network and inputs exist."""
    if device.type == "cuda":
        return _peak_memory(arch_path, ann, kind, steps, crop, batch, device)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_peak_memory, (arch_path, ann, kind, steps, crop, batch, device))


def _peak_memory(arch_path: Path, ann: bool, kind: str, steps: int, crop, batch: int, device: torch.device) -> float:
    torch.manual_seed(0)
    net = SpikingStereoNet(load_architecture(arch_path), 2, ann=ann).to(device)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    shape = (1, SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX) if kind == "infer" else (batch, *crop)
    left, right = (random_events(shape[0], steps, *shape[1:], device) for _ in range(2))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if kind == "infer":
        infer_once(net, left, right, device)
    else:
        train_once(net, optimizer, left, right, device)
    if device.type == "cuda":
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 2**10  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=Path, default=SHIPPED_ARCHITECTURE)
    parser.add_argument("--steps", type=int, default=None, help="time steps T (default: the architecture's)")
    parser.add_argument("--crop", type=int, nargs=2, default=(96, 144), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    arch = load_architecture(args.arch)
    steps = args.steps or arch.num_bins
    # memory first: Linux keeps ru_maxrss across exec, so a child must start before this process grows
    memory = {name: {kind: peak_memory_mib(args.arch, name == "ANN", kind, steps, args.crop, args.batch, device)
                     for kind in ("infer", "train")} for name in ("SNN", "ANN")}
    torch.manual_seed(0)
    nets = {"SNN": SpikingStereoNet(arch, 2, ann=False).to(device), "ANN": SpikingStereoNet(arch, 2, ann=True).to(device)}
    optimizers = {k: torch.optim.Adam(n.parameters(), 1e-3) for k, n in nets.items()}
    full = [random_events(1, steps, SENSOR_HEIGHT_PX, SENSOR_WIDTH_PX, device) for _ in range(2)]
    crops = [random_events(args.batch, steps, *args.crop, device) for _ in range(2)]
    for name, net in nets.items():  # warm-up (allocator, kernels)
        infer_once(net, *full, device)
        train_once(net, optimizers[name], *crops, device)
    times: dict[str, dict[str, list[tuple[float, float]]]] = {k: {"infer": [], "train": []} for k in nets}
    for _ in range(args.repeats):
        for name, net in nets.items():
            times[name]["infer"].append(infer_once(net, *full, device))
            wall, cpu = train_once(net, optimizers[name], *crops, device)
            times[name]["train"].append((wall / args.batch, cpu / args.batch))
    print(f"device {device}, load average {os.getloadavg()[0]:.1f}, threads {torch.get_num_threads()}, T = {steps}, inference 1 x {SENSOR_HEIGHT_PX}x{SENSOR_WIDTH_PX}, "
          f"training {args.batch} x {args.crop[0]}x{args.crop[1]}, median of {args.repeats}")
    print(f"{'':34s}{'SNN':>10s}{'ANN twin':>10s}{'SNN/ANN':>9s}{'/T':>7s}")
    for kind, label in (("infer", "inference"), ("train", "training step")):
        for clock, clock_name in ((0, "wall"), (1, "CPU")):
            snn, ann = (statistics.median(t[clock] for t in times[k][kind]) for k in ("SNN", "ANN"))
            print(f"{f'{label} {clock_name} s/example':34s}{snn:10.3f}{ann:10.3f}{snn / ann:9.2f}{snn / ann / steps:7.2f}")
    for kind, label in (("infer", "peak memory infer MiB"), ("train", "peak memory train MiB")):
        snn, ann = memory["SNN"][kind], memory["ANN"][kind]
        print(f"{label:34s}{snn:10.0f}{ann:10.0f}{snn / max(ann, 1e-9):9.2f}")


if __name__ == "__main__":
    main()
