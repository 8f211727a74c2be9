"""Cost of one search step against one step of the retrained network (the supernet cost multiple).

One search step = a weight step (SGD) on one batch and an architecture step (Adam on alpha/beta) on
another, with the paper's supernet (feature 2 layers, matching 4 layers, filter multiplier 4, 3 steps,
max disparity 48, T = 5, batch 1). One retraining step = one Adam step of the network built from the
shipped MVSEC architecture (filter multiplier 8). Each measurement runs in its own process so that
its peak memory is its own: peak RSS on a CPU, ``torch.cuda.max_memory_allocated`` on a GPU. The crop
grows until the predicted peak (a linear fit of peak memory over pixels) would pass ``--max-gib``;
the fit then says what the paper's crop (192 x 288) needs.

    python bench/bench_search.py                      # CPU, crops up to what fits in --max-gib
    python bench/bench_search.py --device cuda --max-gib 70
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PAPER_CROP = (192, 288)
CROPS = [(48, 96), (96, 144), (192, 288)]  # the last is the paper's crop (SPEC §7)
NUM_BINS = 5
MAX_DISP = 48


def _batch(height: int, width: int, device, seed: int):
    import torch

    gen = torch.Generator().manual_seed(seed)
    left = (torch.rand(1, NUM_BINS, 2, height, width, generator=gen) < 0.1).float()
    right = torch.roll(left, shifts=-8, dims=-1)
    disp = torch.full((1, height, width), 8.0)
    return {"left": left.to(device), "right": right.to(device), "disp_px": disp.to(device),
            "valid": (disp > 0).to(device)}


def measure(kind: str, height: int, width: int, device_name: str, steps: int) -> dict:
    """Run in a child process: build the net, one warm-up step, then time ``steps`` steps."""
    import torch

    from common.paths import SHIPPED_ARCHITECTURE
    from models.arch import load_architecture
    from models.stereo_net import SpikingStereoNet
    from models.supernet import SearchStereoNet
    from stereo.losses import disparity_loss
    from stereo.runtime import resolve_device
    from stereo.searching import arch_step, weight_step

    device = resolve_device(device_name)
    torch.manual_seed(0)

    def loss_fn(model, batch):
        return disparity_loss(model(batch["left"], batch["right"]), batch)

    if kind == "search":
        net = SearchStereoNet(2, NUM_BINS, MAX_DISP, feature_layers=2, matching_layers=4, filter_multiplier=4).to(device)
        weights, arch = net.weight_parameters(), net.arch_parameters()
        w_opt = torch.optim.SGD(weights, lr=2e-3, momentum=0.9, weight_decay=3e-4)
        a_opt = torch.optim.Adam(arch, lr=2e-3, weight_decay=1e-3)

        def step(i: int) -> None:
            weight_step(net, weights, arch, w_opt, _batch(height, width, device, 2 * i), loss_fn, 5.0)
            arch_step(net, weights, arch, a_opt, _batch(height, width, device, 2 * i + 1), loss_fn)
    else:
        net = SpikingStereoNet(load_architecture(SHIPPED_ARCHITECTURE), in_channels=2).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)

        def step(i: int) -> None:
            loss = loss_fn(net, _batch(height, width, device, i))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.train()
    base_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step(0)  # warm-up (kernel selection, allocator)
    times = []
    for i in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        step(i + 1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    if device.type == "cuda":
        peak_gib = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux
    return {"kind": kind, "height": height, "width": width, "step_s": float(np.median(times)),
            "peak_gib": peak_gib, "base_gib": base_rss_kib / 2**20, "device": str(device),
            "weights": sum(p.numel() for p in net.parameters())}


def run_child(kind: str, crop: tuple[int, int], device: str, steps: int) -> dict:
    """One measurement in a fresh interpreter (its own peak memory)."""
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r}); "
            f"from bench.bench_search import measure; "
            f"print(json.dumps(measure({kind!r}, {crop[0]}, {crop[1]}, {device!r}, {steps})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    if out.returncode != 0:
        raise RuntimeError(f"{kind} {crop}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def predicted_peak(rows: list[dict], pixels: int) -> float | None:
    """Linear fit of peak memory over crop pixels (None with fewer than two points)."""
    if len(rows) < 2:
        return None
    x = np.array([r["height"] * r["width"] for r in rows], dtype=float)
    y = np.array([r["peak_gib"] for r in rows])
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope * pixels + intercept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--max-gib", type=float, default=8.0,
                        help="skip crops whose predicted peak passes this (the machine is shared)")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per measurement (after one warm-up)")
    parser.add_argument("--crops", default=",".join(f"{h}x{w}" for h, w in CROPS),
                        help="comma-separated HxW crops, smallest first (multiples of 24)")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rows: dict[str, list[dict]] = {"search": [], "retrain": []}
    print("peak memory: whole process (its step-free baseline in brackets); x mem compares peaks above baseline")
    print(f"{'crop':>9} {'search s':>9} {'retrain s':>9} {'x time':>7} {'search GiB':>14} {'retrain GiB':>14} {'x mem':>6}")
    crops = [tuple(int(v) for v in item.split("x")) for item in args.crops.split(",")]
    for crop in crops:
        predicted = predicted_peak(rows["search"], crop[0] * crop[1])
        if predicted is not None and predicted > args.max_gib:
            print(f"{crop[0]}x{crop[1]:<5} skipped: predicted search peak {predicted:.1f} GiB > --max-gib {args.max_gib}")
            continue
        s = run_child("search", crop, args.device, args.steps)
        r = run_child("retrain", crop, args.device, args.steps)
        rows["search"].append(s)
        rows["retrain"].append(r)
        ratio = (s["peak_gib"] - s["base_gib"]) / max(r["peak_gib"] - r["base_gib"], 1e-9)
        print(f"{crop[0]:>4}x{crop[1]:<4} {s['step_s']:9.2f} {r['step_s']:9.2f} {s['step_s'] / r['step_s']:7.1f} "
              f"{s['peak_gib']:6.2f} ({s['base_gib']:.2f}) {r['peak_gib']:7.2f} ({r['base_gib']:.2f}) {ratio:6.1f}",
              flush=True)
    pixels = PAPER_CROP[0] * PAPER_CROP[1]
    for kind in ("search", "retrain"):
        fit = predicted_peak(rows[kind], pixels)
        if fit is not None:
            print(f"linear fit: {kind} step at {PAPER_CROP[0]}x{PAPER_CROP[1]} needs ~{fit:.1f} GiB peak")
    if rows["search"]:
        print(f"weights: supernet {rows['search'][0]['weights']:,}, retrained {rows['retrain'][0]['weights']:,}; "
              f"device {rows['search'][0]['device']}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
