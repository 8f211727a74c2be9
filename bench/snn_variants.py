"""The research harness behind docs/learning.md: one network variant, N steps, validation every K steps.

Not the training loop (that is stereo/train.py, whose curves bench/bench_learning.py draws): each
variant here is a patch applied to the stock network, so that one change at a time can be tried in
minutes without adding a switch to the product for every idea. What a variant wins moves into the
product with its own option and test. Variants:
  --ann, --fm, --cv, --lr          twin, filter multiplier, cost volume, Adam learning rate
  --bn-weight, --bn-bias           initial BN weight / bias of every layer (tdBN-like at 0.5)
  --decay, --undetach              LIF leak, reset path with gradient
  --fpath, --mpath                 trellis paths, e.g. [0] for the shortest
  --head-skip                      the cost head also reads the cost volume
  --ce W                           + W x cross-entropy of the disparity distribution (Gaussian target)
  --ms                             membrane shortcuts inside cells: every edge adds its source's current
  --xcell                          with --ms: also across cells, pre layers add the previous cell's mean node
                                   current (parameter-free: pooled/repeated channels at level changes)
  --down sub|conv                  downsampling by subsampling, or a strided conv in the pre layer,
                                   instead of max-pooling spikes
  --gradcheck                      print the gradient-efficiency probe per layer group and exit
Writes one CSV per run under --out and prints a line per validation.

    python bench/snn_variants.py --name snn_shallow_lr3 --fm 4 --fpath [0] --mpath [0] --lr 3e-3
    python bench/snn_variants.py --name probe --fm 4 --bn-weight 0.3 --gradcheck
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import weakref
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

import models.cells as cells_module
import models.stereo_net as stereo_net_module
from common.paths import DEFAULT_PREPARED_DIR, SHIPPED_ARCHITECTURE
from data_tools.dataset import StereoEventDataset
from models.arch import Architecture, NetSpec, load_architecture
from models.cost_volume import build_cost_volume
from models.neurons import ConvBNLIF, MultiStepLIF
from models.ops import resample_levels
from models.regression import soft_argmin_disparity, upsample_cost
from models.stereo_net import SpikingStereoNet, pad_to_multiple
from models.topology import EDGES, NUM_NODES, edges_into

PROBE_GROUPS = ["cost_head", "matching.fuse", "matching.cells.3_", "matching.cells.2_", "matching.cells.1_",
                "matching.cells.0_", "matching.stem", "feature.fuse", "feature.cells.1_", "feature.cells.0_",
                "feature.stem"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True)
    p.add_argument("--data", type=Path, default=DEFAULT_PREPARED_DIR)
    p.add_argument("--out", type=Path, default=Path("runs/snn_variants"))
    p.add_argument("--ann", action="store_true")
    p.add_argument("--fm", type=int, default=2)
    p.add_argument("--cv", default="correlation")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--val-every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crop", type=int, nargs=2, default=[72, 144])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--bn-weight", type=float, default=1.0)
    p.add_argument("--bn-bias", type=float, default=0.0)
    p.add_argument("--decay", type=float, default=0.2)
    p.add_argument("--undetach", action="store_true")
    p.add_argument("--fpath", type=json.loads, default=None)
    p.add_argument("--mpath", type=json.loads, default=None)
    p.add_argument("--head-skip", action="store_true")
    p.add_argument("--ce", type=float, default=0.0)
    p.add_argument("--ce-sigma", type=float, default=1.5)
    p.add_argument("--ms", action="store_true")
    p.add_argument("--xcell", action="store_true")
    p.add_argument("--down", choices=["max", "sub", "conv"], default="max")
    p.add_argument("--gradcheck", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


CELL_CURRENTS: dict[int, tuple[weakref.ref, torch.Tensor, int]] = {}  # id(cell output) -> (output, current, level)
CROSS_CELL = {"enabled": False}


def carried_current(spikes: torch.Tensor, to_level: int, channels: int) -> torch.Tensor | None:
    """The producer cell's mean node current brought to ``to_level`` and ``channels`` without weights."""
    entry = CELL_CURRENTS.get(id(spikes)) if CROSS_CELL["enabled"] else None
    if entry is None or entry[0]() is not spikes:  # ids of freed tensors are reused
        return None
    _, current, level = entry
    if level is None:  # a stem layer: carried only where the shapes already agree
        return current if current.shape[2] == channels else None
    steps, batch = current.shape[:2]
    flat = current.flatten(0, 1)
    pool = F.avg_pool2d if flat.dim() == 4 else F.avg_pool3d
    while level < to_level:
        flat, level = pool(flat, 2).repeat_interleave(2, dim=1), level + 1
    while level > to_level:
        flat, level = F.interpolate(flat, scale_factor=2, mode="nearest"), level - 1
        flat = flat.unflatten(1, (-1, 2)).mean(2)
    return flat.unflatten(0, (steps, batch)) if flat.shape[1] == channels else None


def register_current(spikes: torch.Tensor, current: torch.Tensor, level: int | None) -> None:
    for key in [k for k, (ref, _, _) in CELL_CURRENTS.items() if ref() is None]:
        del CELL_CURRENTS[key]
    CELL_CURRENTS[id(spikes)] = (weakref.ref(spikes), current, level)


def stem_shortcut_forward(self, x_seq):
    """ConvBNLIF.forward for stem layers: add the input's current when it has this layer's shape."""
    current = self.membrane_input(x_seq)
    carried = carried_current(x_seq, 0, current.shape[2])
    if carried is not None and carried.shape == current.shape:
        current = current + carried
    spikes = self.neuron(current)
    register_current(spikes, current, None if carried is None and current.shape[-1] != x_seq.shape[-1] else None)
    return spikes


def membrane_shortcut_forward(self, s0_by_level, s1, s0_weights=None, op_weights=None):
    """Cell.forward where every edge adds its source's current (skip: the current alone); retrained cells only."""
    ((level, s0),) = s0_by_level.items()
    pre0 = self.pre0[str(level)]
    i0 = pre0.membrane_input(cells_module.resample_levels(s0, level, self.level))
    i1 = self.pre1.membrane_input(cells_module.resample_levels(s1, self.s1_level, self.level))
    for carried, which in ((carried_current(s0, self.level, i0.shape[2]), 0), (carried_current(s1, self.level, i1.shape[2]), 1)):
        if carried is not None:
            i0, i1 = (i0 + carried, i1) if which == 0 else (i0, i1 + carried)
    states = [(i0, pre0.neuron(i0)), (i1, self.pre1.neuron(i1))]
    for node in range(NUM_NODES):
        current = None
        for edge in edges_into(node):
            for name, op in (self.edges[str(edge)].items() if str(edge) in self.edges else []):
                source_current, source_spikes = states[EDGES[edge][1]]
                out = source_current if name == "skip_connect" else op(source_spikes) + source_current
                current = out if current is None else current + out
        states.append((current, self.nodes[node](current)))
    out = torch.cat([spikes for _, spikes in states[2:]], dim=2)
    if CROSS_CELL["enabled"]:
        register_current(out, torch.stack([c for c, _ in states[2:]]).mean(0), self.level)
    return out


def subsample_levels(x_seq, from_level, to_level):
    """Nearest-neighbour downsampling (every 2^k-th position): binary and rate-preserving."""
    if to_level <= from_level:
        return resample_levels(x_seq, from_level, to_level)
    f = 2 ** (to_level - from_level)
    return x_seq[..., ::f, ::f] if x_seq.dim() == 5 else x_seq[..., ::f, ::f, ::f]


def use_strided_pre_convs(net: nn.Module) -> None:
    """Pre layers that go down k levels become conv(kernel = stride = 2^k) on the full-resolution spikes."""
    cells_module.resample_levels = lambda x, f, t: x if t > f else resample_levels(x, f, t)
    for cell in net.modules():
        if isinstance(cell, cells_module.Cell):
            for source, pre in [(int(lvl), pre) for lvl, pre in cell.pre0.items()] + [(cell.s1_level, cell.pre1)]:
                if source < cell.level:
                    f = 2 ** (cell.level - source)
                    old = pre.conv
                    pre.conv = type(old)(old.in_channels, old.out_channels, f, stride=f, padding=0, bias=False)


def head_skip_forward(net: SpikingStereoNet):
    """Forward where the cost head reads the mean over T of both the matching output and the cost volume."""
    volume_channels = net.matching.stem[0].conv.in_channels
    net.cost_head = nn.Conv3d(net.matching.out_channels + volume_channels, 1, 3, padding=1)

    def forward(left, right):
        batch, (height, width) = left.shape[0], left.shape[-2:]
        views = torch.cat([left, right], dim=0)
        if net.ann:
            views = views.sum(dim=1, keepdim=True)
        x_seq = pad_to_multiple(views).transpose(0, 1)
        feats = net.feature(x_seq)
        steps = feats.shape[0]
        volume = build_cost_volume(net.cost_volume, feats[:, :batch].flatten(0, 1), feats[:, batch:].flatten(0, 1),
                                   net.num_disp).unflatten(0, (steps, batch))
        cost = net.cost_head(torch.cat([net.matching(volume).mean(0), volume.mean(0)], 1))
        cost = upsample_cost(cost, net.max_disp, x_seq.shape[-2], x_seq.shape[-1])
        return soft_argmin_disparity(cost)[:, :height, :width]
    return forward


def build(args: argparse.Namespace) -> SpikingStereoNet:
    shipped = load_architecture(SHIPPED_ARCHITECTURE)
    specs = [NetSpec(path or spec.path, spec.genotype, args.fm, 3, 3)
             for spec, path in ((shipped.feature, args.fpath), (shipped.matching, args.mpath))]
    net = SpikingStereoNet(Architecture(*specs, 5, 48, {}, "", args.cv), in_channels=2, ann=args.ann)
    if args.ms:
        cells_module.Cell.forward = membrane_shortcut_forward
        CROSS_CELL["enabled"] = args.xcell
        if args.xcell:
            for name, module in net.named_modules():
                if ".stem." in f".{name}" and isinstance(module, ConvBNLIF):
                    module.forward = stem_shortcut_forward.__get__(module)
    if args.down == "sub":
        cells_module.resample_levels = subsample_levels
    if args.down == "conv":
        use_strided_pre_convs(net)
    for module in net.modules():
        if isinstance(module, MultiStepLIF):
            module.decay, module.detach_reset = args.decay, not args.undetach
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            nn.init.constant_(module.weight, args.bn_weight)
            nn.init.constant_(module.bias, args.bn_bias)
    if args.head_skip:
        net.forward = head_skip_forward(net)
    return net


class CostStash:
    """Keeps the last cost volume handed to the soft argmin (for the cross-entropy term)."""

    def __init__(self) -> None:
        self.cost = None
        original = stereo_net_module.soft_argmin_disparity

        def stash(cost):
            self.cost = cost
            return original(cost)
        stereo_net_module.soft_argmin_disparity = stash

    def cross_entropy(self, batch, sigma: float) -> torch.Tensor:
        height, width = batch["disp_px"].shape[-2:]
        log_prob = F.log_softmax(-self.cost, dim=1)[:, :, :height, :width]
        d = torch.arange(self.cost.shape[1], dtype=self.cost.dtype).view(1, -1, 1, 1)
        target = torch.exp(-0.5 * ((d - batch["disp_px"][:, None]) / sigma) ** 2)
        target = target / target.sum(1, keepdim=True).clamp_min(1e-12)
        return -(target * log_prob).sum(1)[batch["valid"]].mean()


def disparity_loss(net, batch) -> torch.Tensor:
    pred = net(batch["left"], batch["right"])
    return F.smooth_l1_loss(pred[batch["valid"]], batch["disp_px"][batch["valid"]])


def gradient_efficiency(net: SpikingStereoNet, data: Path) -> str:
    """Per layer group: loss decrease along -g (step 1 % of the group's weight norm) / the linear prediction,
    and the increase along +g likewise. 1/1 for an exact gradient of a smooth loss; ~0 where the computed
    gradient says nothing about what the spiking forward does."""
    dataset = StereoEventDataset(data, "train", crop=(72, 144), seed=0)
    batch = {k: torch.stack([dataset[i][k] for i in range(8)]) for k in ("left", "right", "disp_px", "valid")}
    net.train()
    loss0 = disparity_loss(net, batch)
    net.zero_grad()
    loss0.backward()
    params = dict(net.named_parameters())
    grads = {n: q.grad.clone() for n, q in params.items() if q.grad is not None}
    cells = []
    for group in PROBE_GROUPS:
        names = [n for n in grads if n.startswith(group)]
        if not names:
            continue
        g2 = sum(float(grads[n].pow(2).sum()) for n in names)
        scale = 0.01 * sum(float(params[n].detach().pow(2).sum()) for n in names) ** 0.5 / g2 ** 0.5
        with torch.no_grad():
            for n in names:
                params[n] -= scale * grads[n]
            down = float(loss0) - float(disparity_loss(net, batch))
            for n in names:
                params[n] += 2 * scale * grads[n]
            up = float(disparity_loss(net, batch)) - float(loss0)
            for n in names:
                params[n] -= scale * grads[n]
        cells.append(f"{group}:{down / (scale * g2):+.2f}/{up / (scale * g2):+.2f}")
    return " ".join(cells)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    stash = CostStash()
    net = build(args)
    if args.gradcheck:
        print(args.name, gradient_efficiency(net, args.data))
        return
    train = StereoEventDataset(args.data, "train", crop=tuple(args.crop), seed=args.seed)
    val = StereoEventDataset(args.data, "val")
    val_items = [val[i] for i in range(len(val))]
    median = float(np.median(np.concatenate([train[i]["disp_px"][train[i]["valid"]].numpy()
                                             for i in range(0, len(train), 2)])))

    def mde(pred, item) -> float:
        return float((pred - item["disp_px"])[item["valid"]].abs().mean())

    constant = float(np.mean([mde(torch.full_like(it["disp_px"], median), it) for it in val_items]))
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    rows, losses, step, epoch, train_time = [], [], 0, 0, 0.0
    print(f"{args.name}: const {constant:.3f}", flush=True)
    while step < args.steps:
        train.set_epoch(epoch)
        epoch += 1
        order = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        for batch in DataLoader(train, batch_size=args.batch, shuffle=True, generator=order, drop_last=True):
            started = time.perf_counter()
            loss = disparity_loss(net, batch)
            if args.ce:
                loss = loss + args.ce * stash.cross_entropy(batch, args.ce_sigma)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            train_time += time.perf_counter() - started
            losses.append(loss.item())
            step += 1
            if step % args.val_every == 0 or step == args.steps:
                net.eval()
                with torch.no_grad():
                    val_mde = float(np.mean([mde(net(it["left"][None], it["right"][None])[0], it) for it in val_items]))
                net.train()
                rows.append({"step": step, "train_s": round(train_time, 1),
                             "train_loss": float(np.mean(losses[-args.val_every:])), "val_mde": val_mde,
                             "const_mde": constant})
                print(f"{args.name} step {step} t {train_time:.0f}s loss {rows[-1]['train_loss']:.3f} val {val_mde:.3f}",
                      flush=True)
            if step >= args.steps:
                break
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / f"{args.name}.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
