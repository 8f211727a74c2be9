"""The SpikeDHS search loop (SPEC §5-§7): first-order alternating optimisation of a supernet.

Read top to bottom: split the training examples into halves A (weights) and B (architecture);
build the supernet; SGD with momentum and cosine decay for the weights, Adam for alpha/beta; then the
shared epoch loop (stereo/loop.py) with this per-step work: a weight step on a batch of A, then (from
``search.arch_start_epoch`` on) an architecture step on a batch of B. Each step clears both gradient
sets and steps one optimiser only, so architecture parameters change only in architecture steps and
weights only in weight steps (BN running statistics follow every training-mode forward, as in DARTS).
Optional DGS (``search.use_dgs`` with section ``dgs``) and firing-rate penalty
(``search.rate_penalty``). After each epoch's validation of the weighted supernet: the decoded
architecture (``architecture.json``, retraining channel sizes), the alpha/beta/b history
(``search_history.json``), the pictures (through the caller's ``draw``) and ``search_last.pt`` with
everything ``--resume`` needs to continue exactly. Under torchrun every rank searches its shard (DDP
all-reduces alpha/beta with the weights, since they are module parameters); rank 0 writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset

from common.atomic import write_json_atomic
from common.errors import UserError
from common.paths import ARCHITECTURE_NAME, DGS_HISTORY_NAME, SEARCH_CHECKPOINT_NAME, SEARCH_HISTORY_NAME
from data_tools.dataset import check_max_disparity
from models.dgs import DGSScheduler
from models.neurons import lif_modules
from models.supernet import SearchStereoNet
from models.synops import PJ_TO_MJ
from models.topology import NUM_NODES, PAD_MULTIPLE
from stereo.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, state_mismatch
from stereo.config import Config, config_to_dict
from stereo.distributed import DistContext
from stereo.loop import EpochLoop, EpochResult, make_loaders, run_epochs
from stereo.losses import LossFn, RatePenalty, batch_loss
from stereo.runtime import seed_everything


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
                           cost_volume=s.cost_volume, membrane_shortcuts=s.membrane_shortcuts, readout=s.readout)


def search_loss(net: SearchStereoNet, cfg: Config, device: torch.device) -> LossFn:
    """The loss of both step kinds: disparity + rate penalty (+ energy_penalty x the expected synaptic
    energy per example in mJ, ``search.energy_penalty`` > 0: it pulls alpha towards skips and beta towards
    paths that spend fewer synaptic operations; weights see it too, through the spikes' counts only)."""
    s = cfg.search
    base = batch_loss(device, RatePenalty(s.rate_penalty, tuple(s.rate_layers)))
    net.record_synops(s.energy_penalty > 0)
    if s.energy_penalty <= 0:
        return base
    mj_per_synop = cfg.energy.e_ac_pj * PJ_TO_MJ

    def loss_fn(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        loss = base(model, batch)
        energy_mj = net.expected_synops() * mj_per_synop / batch["left"].shape[0]
        return loss + s.energy_penalty * energy_mj.to(loss.dtype)
    return loss_fn


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
               resume: bool = False, seed: int = 0,
               draw: Callable[[list[dict[str, Any]], Path], None] | None = None) -> tuple[SearchStereoNet, list[dict[str, Any]]]:
    """Search, validate, decode and checkpoint into ``out_dir``; returns this rank's supernet and the history.

    ``draw(history, out_dir)``, when given, redraws the pictures after every epoch (the CLI passes
    eval.search_plots.plot_search: the loop itself stays below the evaluation layer).
    """
    out_dir = Path(out_dir)
    s = cfg.search
    if len(train_set) < 2:
        raise UserError(f"the search needs at least 2 training examples (halves A and B), the dataset has {len(train_set)}")
    ckpt = load_checkpoint(out_dir / SEARCH_CHECKPOINT_NAME, search=True) if resume else None

    if (manifest := getattr(train_set, "manifest", None)) is not None:
        check_max_disparity(manifest, s.max_disparity_px, "search.max_disparity_px", train_set.prepared_dir)
    seed_everything(seed)
    net = build_supernet(cfg, int(train_set.in_channels), int(train_set.num_bins)).to(ctx.device)
    weights, arch = net.weight_parameters(), net.arch_parameters()
    w_opt = torch.optim.SGD(weights, lr=s.weight_lr, momentum=s.weight_momentum, weight_decay=s.weight_decay)
    w_sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, T_max=s.epochs, eta_min=s.weight_lr_min)
    a_opt = torch.optim.Adam(arch, lr=s.arch_lr, weight_decay=s.arch_weight_decay)
    dgs = DGSScheduler(cfg.dgs) if s.use_dgs and cfg.dgs.enabled else None
    start_epoch, history = 0, []
    if ckpt is not None:
        if (problem := state_mismatch(net.state_dict(), ckpt["model_state"])) is not None:
            raise UserError(f"{out_dir / SEARCH_CHECKPOINT_NAME}: the supernet differs from this config's ({problem}); "
                            f"resume with the config it was started with")
        net.load_state_dict(ckpt["model_state"])
        w_opt.load_state_dict(ckpt["weight_optimizer"])
        w_sched.load_state_dict(ckpt["weight_scheduler"])
        a_opt.load_state_dict(ckpt["arch_optimizer"])
        set_rng_state(ckpt["rng"])
        if dgs is not None:
            dgs.history = list(ckpt.get("dgs_history", []))
        start_epoch, history = int(ckpt["epoch"]), list(ckpt["history"])
    model = DistributedDataParallel(net, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None) \
        if ctx.enabled else net

    half_a, half_b = split_halves(len(train_set))
    loaders = {"batch_size": s.batch_size, "val_batch_size": cfg.eval.batch_size, "num_workers": cfg.data.num_workers}
    sampler_a, loader_a, val_loader = make_loaders(Subset(train_set, half_a), val_set, ctx=ctx, seed=seed, **loaders)
    sampler_b, loader_b, _ = make_loaders(Subset(train_set, half_b), val_set, ctx=ctx, seed=seed + 1, **loaders)
    loss_fn = search_loss(net, cfg, ctx.device)
    batches_b: dict[int, Iterator[dict[str, Any]]] = {}  # one cycle of half B per epoch

    def step(batch_a: dict[str, Any], epoch: int, index: int) -> dict[str, float]:
        losses = {"w_loss": weight_step(model, weights, arch, w_opt, batch_a, loss_fn, s.grad_clip)}
        if epoch >= s.arch_start_epoch:
            batch_b = next(batches_b.setdefault(epoch, _cycle(loader_b)))
            losses["a_loss"] = arch_step(model, weights, arch, a_opt, batch_b, loss_fn)
        return losses

    def end_epoch(result: EpochResult) -> None:
        batches_b.clear()
        if not ctx.is_main:
            return
        val = result.val
        entry = {"epoch": result.epoch, "weight_lr": result.lr, "weight_loss": result.losses["w_loss"],
                 "arch_loss": result.losses.get("a_loss"), "val_mde_px": val["mde_px"],
                 "val_1pa": val["1pa"], "val_images": val["images"],
                 "mean_rate": sum(val["rates"].values()) / len(val["rates"]) if val["rates"] else 0.0,
                 "epoch_time_s": result.seconds, **snapshot(net, s.retrain_filter_multiplier)}
        history.append(entry)
        _write_outputs(out_dir, net, cfg, history, seed)
        if draw is not None:
            draw(history, out_dir)
        save_checkpoint(out_dir / SEARCH_CHECKPOINT_NAME, {
            "kind": "search", "model_state": net.state_dict(), "weight_optimizer": w_opt.state_dict(),
            "weight_scheduler": w_sched.state_dict(), "arch_optimizer": a_opt.state_dict(), "rng": rng_state(),
            "epoch": result.epoch, "history": history, "config": config_to_dict(cfg),
            "in_channels": int(train_set.in_channels), "num_bins": int(train_set.num_bins),
            "dgs_history": dgs.history if dgs is not None else [],
        })
        if dgs is not None:
            dgs.save_history(out_dir / DGS_HISTORY_NAME)
        arch_note = "" if entry["arch_loss"] is None else f", arch loss {entry['arch_loss']:.4f}"
        print(f"search epoch {result.epoch}/{s.epochs}: weight loss {entry['weight_loss']:.4f}{arch_note}, "
              f"val MDE {val['mde_px']:.3f} px, 1PA {val['1pa']:.1f} %, feature path {entry['feature']['path']}, "
              f"matching path {entry['matching']['path']}, {result.seconds:.0f} s")

    if ctx.is_main:
        print(f"searching: {sum(p.numel() for p in weights):,} weights, {sum(p.numel() for p in arch)} architecture "
              f"parameters, halves of {len(half_a)} / {len(half_b)} examples, {len(val_set)} val, epochs "
              f"{start_epoch + 1}..{s.epochs} (architecture steps from epoch {s.arch_start_epoch + 1}), "
              f"{ctx.world_size} process(es) on {ctx.device}, writing {out_dir}")
        if not history:
            history.append({"epoch": 0, **snapshot(net, s.retrain_filter_multiplier)})
    loop = EpochLoop(raw=net, step=step, end_epoch=end_epoch, train_loader=loader_a, val_loader=val_loader,
                     samplers=[sampler_a, sampler_b], crop_dataset=train_set, schedulers=[w_sched], epochs=s.epochs,
                     focal_baseline_px_m=float(getattr(val_set, "focal_baseline_px_m", 1.0)), dgs=dgs,
                     dgs_max_batches=cfg.dgs.max_batches, precise_bn_batches=s.precise_bn_batches,
                     desc="search epoch")
    run_epochs(loop, start_epoch, ctx)
    return net, history


def _write_outputs(out_dir: Path, net: SearchStereoNet, cfg: Config, history: list[dict[str, Any]], seed: int) -> None:
    """architecture.json (retraining channel sizes) and the history JSON."""
    epoch = history[-1]["epoch"]
    arch = net.decode(cfg.search.retrain_filter_multiplier,
                      source=f"stereo/search.py, epoch {epoch}/{cfg.search.epochs}, seed {seed}")
    arch.save(out_dir / ARCHITECTURE_NAME)
    write_json_atomic(out_dir / SEARCH_HISTORY_NAME, {"config": config_to_dict(cfg), "epochs": history})


def _cycle(loader: DataLoader) -> Iterator[dict[str, Any]]:
    """Batches of ``loader``, starting one fresh pass whenever the previous one ends."""
    while True:
        yielded = False
        for batch in loader:
            yielded = True
            yield batch
        if not yielded:
            raise UserError("half B of the training examples yields no batch")
