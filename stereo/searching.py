"""The SpikeDHS search loop (SPEC §5-§7): first-order alternating optimisation of a supernet.

Read top to bottom: split the training examples into halves A (weights) and B (architecture);
build the supernet; SGD with momentum and cosine decay for the weights, Adam for alpha/beta. Per
step: a weight step on a batch of A, then (from ``search.arch_start_epoch`` on) an architecture step on
a batch of B; each step clears both gradient sets and steps one optimiser only, so architecture
parameters change only in architecture steps and weights only in weight steps (BN running statistics
follow every training-mode forward, as in DARTS). Optional DGS (``search.use_dgs`` with section
``dgs``) and firing-rate penalty (``search.rate_penalty``). Per epoch: optionally precise BN statistics
(``search.precise_bn_batches``), validation MDE/1PA of the weighted supernet, the decoded architecture (``architecture.json``, retraining channel sizes), the
alpha/beta/b history (``search_history.json``), the pictures, and ``search_last.pt`` with everything
``--resume`` needs to continue exactly. Under torchrun every rank searches its shard (DDP all-reduces
alpha/beta with the weights, since they are module parameters); rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from data_tools.atomic import write_json_atomic
from data_tools.errors import UserError
from models.dgs import DGSScheduler
from models.neurons import lif_modules
from models.supernet import SearchStereoNet
from models.topology import NUM_NODES, PAD_MULTIPLE
from stereo.checkpoint import read_checkpoint_file, rng_state, save_checkpoint, set_rng_state, state_mismatch
from stereo.config import Config, config_to_dict
from stereo.distributed import DistContext, all_reduce_sum
from stereo.runtime import seed_everything
from stereo.training import (
    dgs_batches,
    dgs_loss,
    make_loaders,
    recalibrate_batchnorm,
    to_device,
    training_loss,
    validate,
)

ARCHITECTURE_NAME = "architecture.json"
HISTORY_NAME = "search_history.json"
CHECKPOINT_NAME = "search_last.pt"
LossFn = Callable[[nn.Module, dict[str, Any]], torch.Tensor]


def split_halves(num_examples: int) -> tuple[range, range]:
    """Half A (weights) and half B (architecture) of the training examples: first and second half."""
    half = num_examples // 2
    return range(0, half), range(half, num_examples)


def weight_step(model: nn.Module, weights: list[nn.Parameter], arch: list[nn.Parameter], optimizer: torch.optim.Optimizer,
                batch: dict[str, Any], loss_fn: LossFn, grad_clip: float = 0.0) -> float:
    """One SGD step of the weights on ``batch``; alpha/beta gradients are computed but cleared, never applied."""
    loss = loss_fn(model, batch)
    _clear(weights + arch)
    loss.backward()
    _clear(arch)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(weights, grad_clip)
    optimizer.step()
    return float(loss.detach())


def arch_step(model: nn.Module, weights: list[nn.Parameter], arch: list[nn.Parameter], optimizer: torch.optim.Optimizer,
              batch: dict[str, Any], loss_fn: LossFn) -> float:
    """One Adam step of alpha/beta on ``batch`` (first order: the weights are held fixed)."""
    loss = loss_fn(model, batch)
    _clear(weights + arch)
    loss.backward()
    _clear(weights)
    optimizer.step()
    return float(loss.detach())


def _clear(params: list[nn.Parameter]) -> None:
    for p in params:
        p.grad = None


def build_supernet(cfg: Config, in_channels: int, num_bins: int) -> SearchStereoNet:
    s = cfg.search
    if s.steps != NUM_NODES or s.block_multiplier != NUM_NODES:
        raise UserError(f"search.steps and search.block_multiplier must both be {NUM_NODES} "
                        f"(the cell concatenates its {NUM_NODES} nodes), got {s.steps} and {s.block_multiplier}")
    for key in ("feature_layers", "matching_layers", "filter_multiplier", "retrain_filter_multiplier", "epochs",
                "batch_size"):
        if getattr(s, key) < 1:
            raise UserError(f"search.{key} must be a positive integer, got {getattr(s, key)}")
    if s.max_disparity_px <= 0 or s.max_disparity_px % PAD_MULTIPLE:
        raise UserError(f"search.max_disparity_px must be a positive multiple of {PAD_MULTIPLE}, got {s.max_disparity_px}")
    return SearchStereoNet(in_channels, num_bins, s.max_disparity_px, s.feature_layers, s.matching_layers,
                           s.filter_multiplier, s.steps, ann=False, init_std=s.arch_init_std,
                           cost_volume=s.cost_volume, membrane_shortcuts=s.membrane_shortcuts)


def search_config(cfg: Config) -> Config:
    """The config the shared training helpers see: the search's batch size, rate penalty and layers."""
    train = dataclasses.replace(cfg.train, batch_size=cfg.search.batch_size, rate_penalty=cfg.search.rate_penalty,
                                rate_layers=list(cfg.search.rate_layers))
    return dataclasses.replace(cfg, train=train)


def snapshot(net: SearchStereoNet, retrain_fm: int) -> dict[str, Any]:
    """alpha/beta as probabilities, the decoded nets, and every LIF's b (for the history and the pictures)."""
    arch = net.decode(retrain_fm)
    entry: dict[str, Any] = {"lif_b": {name: round(float(m.b), 6) for name, m in lif_modules(net).items()}}
    for name, sub in (("feature", net.feature), ("matching", net.matching)):
        spec = getattr(arch, name)
        entry[name] = {"alpha": sub.op_weights().tolist(), "beta": sub.move_probs().tolist(),
                       "path": spec.path, "genotype": spec.genotype}
    return entry


def run_search(cfg: Config, train_set: Dataset, val_set: Dataset, out_dir: Path, ctx: DistContext,
               resume: bool = False, seed: int = 0) -> tuple[SearchStereoNet, list[dict[str, Any]]]:
    """Search, validate, decode and checkpoint into ``out_dir``; returns this rank's supernet and the history."""
    out_dir = Path(out_dir)
    show, device, s = ctx.is_main, ctx.device, cfg.search
    if len(train_set) < 2:
        raise UserError(f"the search needs at least 2 training examples (halves A and B), the dataset has {len(train_set)}")
    ckpt = _load_resume(out_dir / CHECKPOINT_NAME) if resume else None

    seed_everything(seed)
    net = build_supernet(cfg, int(train_set.in_channels), int(train_set.num_bins)).to(device)
    weights, arch = net.weight_parameters(), net.arch_parameters()
    w_opt = torch.optim.SGD(weights, lr=s.weight_lr, momentum=s.weight_momentum, weight_decay=s.weight_decay)
    w_sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, T_max=s.epochs, eta_min=s.weight_lr_min)
    a_opt = torch.optim.Adam(arch, lr=s.arch_lr, weight_decay=s.arch_weight_decay)
    dgs = DGSScheduler(cfg.dgs) if s.use_dgs and cfg.dgs.enabled else None
    start_epoch, history = 0, []
    if ckpt is not None:
        if (problem := state_mismatch(net.state_dict(), ckpt["model_state"])) is not None:
            raise UserError(f"{out_dir / CHECKPOINT_NAME}: the supernet differs from this config's ({problem}); "
                            f"resume with the config it was started with")
        net.load_state_dict(ckpt["model_state"])
        w_opt.load_state_dict(ckpt["weight_optimizer"])
        w_sched.load_state_dict(ckpt["weight_scheduler"])
        a_opt.load_state_dict(ckpt["arch_optimizer"])
        set_rng_state(ckpt["rng"])
        _set_crop_rng_state(train_set, ckpt.get("crop_rng"))
        if dgs is not None:
            dgs.history = list(ckpt.get("dgs_history", []))
        start_epoch, history = int(ckpt["epoch"]), list(ckpt["history"])
    model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None) if ctx.enabled else net

    half_a, half_b = split_halves(len(train_set))
    scfg = search_config(cfg)
    sampler_a, loader_a, val_loader = make_loaders(Subset(train_set, half_a), val_set, scfg, ctx, seed)
    sampler_b, loader_b, _ = make_loaders(Subset(train_set, half_b), val_set, scfg, ctx, seed + 1)

    def loss_fn(m: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return training_loss(m, net, to_device(batch, device), scfg, ann=False)

    if show:
        print(f"searching: {sum(p.numel() for p in weights):,} weights, {sum(p.numel() for p in arch)} architecture "
              f"parameters, halves of {len(half_a)} / {len(half_b)} examples, {len(val_set)} val, epochs "
              f"{start_epoch + 1}..{s.epochs} (architecture steps from epoch {s.arch_start_epoch + 1}), "
              f"{ctx.world_size} process(es) on {device}, writing {out_dir}")
    if not history and show:
        history.append({"epoch": 0, **snapshot(net, s.retrain_filter_multiplier)})
    for epoch in range(start_epoch, s.epochs):
        started = time.perf_counter()
        sampler_a.set_epoch(epoch)
        sampler_b.set_epoch(epoch)
        net.train()  # before DGS too: validation left the net in eval mode
        if dgs is not None and dgs.should_run(epoch):
            dgs.run(net, dgs_batches(loader_a, cfg.dgs.max_batches), dgs_loss(device), epoch)
        searching_arch = epoch >= s.arch_start_epoch
        sums = torch.zeros(4, dtype=torch.float64, device=device)  # weight loss, steps, arch loss, steps
        batches_b = _cycle(loader_b)
        bar = tqdm(loader_a, desc=f"search epoch {epoch + 1}/{s.epochs}", leave=False, disable=not show)
        for batch_a in bar:
            sums[0] += weight_step(model, weights, arch, w_opt, batch_a, loss_fn, s.grad_clip)
            sums[1] += 1
            if searching_arch:
                sums[2] += arch_step(model, weights, arch, a_opt, next(batches_b), loss_fn)
                sums[3] += 1
            bar.set_postfix(w_loss=f"{float(sums[0] / sums[1]):.3f}",
                            a_loss=f"{float(sums[2] / sums[3]):.3f}" if sums[3] else "-")
        lr = w_opt.param_groups[0]["lr"]
        w_sched.step()
        sums = all_reduce_sum(sums, ctx)
        if s.precise_bn_batches > 0:
            recalibrate_batchnorm(net, loader_a, s.precise_bn_batches, ctx)
        val = validate(net, val_loader, float(getattr(val_set, "focal_baseline_px_m", 1.0)), ctx, False, show)
        if not ctx.is_main:
            continue
        entry = {"epoch": epoch + 1, "weight_lr": lr, "weight_loss": float(sums[0] / max(float(sums[1]), 1.0)),
                 "arch_loss": float(sums[2] / sums[3]) if sums[3] else None, "val_mde_px": val["mde_px"],
                 "val_1pa": val["1pa"], "val_images": val["images"],
                 "mean_rate": sum(val["rates"].values()) / len(val["rates"]) if val["rates"] else 0.0,
                 "epoch_time_s": time.perf_counter() - started, **snapshot(net, s.retrain_filter_multiplier)}
        history.append(entry)
        _write_outputs(out_dir, net, cfg, history, seed)
        save_checkpoint(out_dir / CHECKPOINT_NAME, {
            "kind": "search", "model_state": net.state_dict(), "weight_optimizer": w_opt.state_dict(),
            "weight_scheduler": w_sched.state_dict(), "arch_optimizer": a_opt.state_dict(), "rng": rng_state(),
            "crop_rng": _crop_rng_state(train_set), "epoch": epoch + 1, "history": history, "config": config_to_dict(cfg),
            "in_channels": int(train_set.in_channels), "num_bins": int(train_set.num_bins),
            "dgs_history": dgs.history if dgs is not None else [],
        })
        if dgs is not None:
            dgs.save_history(out_dir / "dgs_history.json")
        arch_note = "" if entry["arch_loss"] is None else f", arch loss {entry['arch_loss']:.4f}"
        print(f"search epoch {epoch + 1}/{s.epochs}: weight loss {entry['weight_loss']:.4f}{arch_note}, "
              f"val MDE {val['mde_px']:.3f} px, 1PA {val['1pa']:.1f} %, feature path {entry['feature']['path']}, "
              f"matching path {entry['matching']['path']}, {entry['epoch_time_s']:.0f} s")
    return net, history


def _write_outputs(out_dir: Path, net: SearchStereoNet, cfg: Config, history: list[dict[str, Any]], seed: int) -> None:
    """architecture.json (retraining channel sizes), the history JSON and the pictures."""
    from eval.search_plots import plot_search

    epoch = history[-1]["epoch"]
    arch = net.decode(cfg.search.retrain_filter_multiplier,
                      source=f"stereo/search.py, epoch {epoch}/{cfg.search.epochs}, seed {seed}")
    arch.save(out_dir / ARCHITECTURE_NAME)
    write_json_atomic(out_dir / HISTORY_NAME, {"config": config_to_dict(cfg), "epochs": history})
    plot_search(history, out_dir)


def _load_resume(path: Path) -> dict[str, Any]:
    ckpt = read_checkpoint_file(path, missing_hint="start the search without --resume")
    if not isinstance(ckpt, dict) or ckpt.get("kind") != "search":
        raise UserError(f"--resume: {path} is not a search checkpoint")
    return ckpt


def _cycle(loader: DataLoader) -> Iterator[dict[str, Any]]:
    """Batches of ``loader``, starting one fresh pass whenever the previous one ends."""
    while True:
        yielded = False
        for batch in loader:
            yielded = True
            yield batch
        if not yielded:
            raise UserError("half B of the training examples yields no batch")



def _crop_rng_state(dataset: Dataset) -> dict[str, Any] | None:
    """The random-crop stream of a StereoEventDataset (its own generator, outside the global RNGs)."""
    rng = getattr(dataset, "_rng", None)
    return None if rng is None else rng.bit_generator.state


def _set_crop_rng_state(dataset: Dataset, state: dict[str, Any] | None) -> None:
    if state is not None and hasattr(dataset, "_rng"):
        dataset._rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
        dataset._rng.bit_generator.state = state
        dataset._rng_worker = -1
