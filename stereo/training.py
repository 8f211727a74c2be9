"""Retraining a searched architecture (SPEC §5, §7): the loop behind ``stereo/train.py``.

Read top to bottom: build the network (SNN or its ANN twin) from the architecture; Adam with step
decay; per epoch: DGS on its schedule (SNN only), one pass over shuffled random crops with
smooth-L1 on valid pixels (+ the optional firing-rate penalty), optionally precise BN statistics
(``train.precise_bn_batches``), validation on full frames (MDE and
1PA per image over valid pixels, plain mean over images; firing rate per layer), then ``last.pt``
(with everything ``--resume`` needs), ``best.pt`` by validation MDE, a CSV row and TensorBoard
scalars. Under torchrun every rank trains its shard (DDP); rank 0 writes.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm import tqdm

from data_tools.atomic import atomic_path, write_json_atomic
from data_tools.errors import UserError
from data_tools.paths import BEST_CHECKPOINT_NAME, LAST_CHECKPOINT_NAME
from eval.metrics import image_metrics
from models.arch import Architecture, architecture_from_dict
from models.dgs import DGSScheduler
from models.firing import FiringRateRecorder
from models.health import health_report, layer_health
from models.stereo_net import SpikingStereoNet, current_lif_b
from models.topology import PAD_MULTIPLE
from stereo.checkpoint import load_checkpoint, model_payload, rng_state, save_checkpoint, set_rng_state
from stereo.config import Config, config_to_dict
from stereo.distributed import DistContext, all_reduce_sum
from stereo.runtime import seed_everything

RATE_PREFIXES = ["feature", "matching"]
METRICS_CSV = "metrics.csv"
CURVE_CSV = "curve.csv"


def open_datasets(prepared_dir: Path, cfg: Config, seed: int) -> tuple[Dataset, Dataset]:
    """Training set (random crops) and validation set (full frames) of a prepared dataset."""
    from data_tools.dataset import StereoEventDataset

    crop = (cfg.data.crop_height, cfg.data.crop_width)
    if any(size <= 0 or size % PAD_MULTIPLE for size in crop):
        raise UserError(f"data.crop_height/crop_width must be positive multiples of {PAD_MULTIPLE}, got {crop}")
    common = {"num_bins": cfg.data.num_bins, "encoding": cfg.data.encoding, "seed": seed}
    train_set = StereoEventDataset(prepared_dir, "train", crop=crop, max_examples=cfg.data.max_train_examples, **common)
    val_set = StereoEventDataset(prepared_dir, "val", max_examples=cfg.data.max_val_examples, **common)
    return train_set, val_set


def disparity_loss(pred_disp_px: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Smooth-L1 over the valid ground-truth pixels of the batch (0 with the graph kept if none)."""
    valid = batch["valid"]
    if not bool(valid.any()):
        return pred_disp_px.sum() * 0.0
    return F.smooth_l1_loss(pred_disp_px[valid], batch["disp_px"][valid])


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def training_loss(model: nn.Module, raw: nn.Module, batch: dict[str, torch.Tensor], cfg: Config, ann: bool) -> torch.Tensor:
    """Disparity loss plus rate_penalty x mean firing rate of the chosen layers (SNN only)."""
    use_penalty = cfg.train.rate_penalty > 0 and not ann
    recorder = FiringRateRecorder(raw, cfg.train.rate_layers) if use_penalty else contextlib.nullcontext()
    with recorder as rec:
        loss = disparity_loss(model(batch["left"], batch["right"]), batch)
        if use_penalty:
            loss = loss + cfg.train.rate_penalty * rec.penalty()
    return loss


@torch.no_grad()
def validate(raw: nn.Module, loader: DataLoader, focal_baseline_px_m: float, ctx: DistContext, ann: bool,
             show: bool) -> dict[str, Any]:
    """MDE / 1PA per image over valid pixels, plain mean over images (all ranks); rates per LIF layer.

    Every rank validates its own shard; sums are added over ranks. Rates are weighted by each rank's
    number of examples (all full frames, so this is the rate over the whole validation set).
    """
    raw.eval()
    recorder = FiringRateRecorder(raw, RATE_PREFIXES) if not ann else contextlib.nullcontext()
    names = sorted(recorder.layers) if not ann else []
    sums = torch.zeros(3, dtype=torch.float64, device=ctx.device)  # sum MDE, sum 1PA, images with valid pixels
    examples = 0
    with recorder as rec:
        for batch in tqdm(loader, desc="  validate", leave=False, disable=not show):
            batch = to_device(batch, ctx.device)
            pred = raw(batch["left"], batch["right"])
            examples += pred.shape[0]
            for i in range(pred.shape[0]):
                metrics = image_metrics(pred[i], batch["disp_px"][i], batch["valid"][i], focal_baseline_px_m)
                if metrics is not None:
                    sums += torch.tensor([metrics["mde_px"], metrics["1pa"], 1.0], dtype=torch.float64, device=ctx.device)
        rates = rec.rates() if not ann else {}
    sums = all_reduce_sum(sums, ctx)
    weighted = torch.tensor([rates.get(n, 0.0) * examples for n in names] + [examples], dtype=torch.float64,
                            device=ctx.device)
    weighted = all_reduce_sum(weighted, ctx)
    total_examples = float(weighted[-1])
    images = int(sums[2])
    return {
        "mde_px": float(sums[0] / images) if images else math.nan,
        "1pa": float(sums[1] / images) if images else math.nan,
        "images": images,
        "rates": {n: float(weighted[i]) / max(total_examples, 1.0) for i, n in enumerate(names)},
    }


@torch.no_grad()
def recalibrate_batchnorm(raw: nn.Module, loader: DataLoader, num_batches: int, ctx: DistContext) -> None:
    """Precise BN: replace every BN's running statistics by their average over ``num_batches`` training
    batches (forward only, training mode), averaged over ranks so every rank evaluates the same network."""
    norms = [m for m in raw.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
    raw.train()
    for batch in itertools.islice(loader, num_batches):
        batch = to_device(batch, ctx.device)
        raw(batch["left"], batch["right"])
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
        for stat in (norm.running_mean, norm.running_var):
            stat.copy_(all_reduce_sum(stat, ctx) / ctx.world_size)


def make_loaders(train_set: Dataset, val_set: Dataset, cfg: Config, ctx: DistContext, seed: int):
    """Shuffled training shards (reshuffled per epoch by seed + epoch) and disjoint validation shards."""
    sampler = DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)
    pin = ctx.device.type == "cuda"
    train_loader = DataLoader(train_set, batch_size=cfg.train.batch_size, sampler=sampler,
                              num_workers=cfg.data.num_workers, pin_memory=pin, drop_last=False)
    val_shard = Subset(val_set, range(ctx.rank, len(val_set), ctx.world_size))
    val_loader = DataLoader(val_shard, batch_size=cfg.eval.batch_size, num_workers=cfg.data.num_workers, pin_memory=pin)
    return sampler, train_loader, val_loader


def dgs_batches(loader: DataLoader, limit: int) -> Iterator[dict[str, Any]]:
    """At most ``limit`` training batches from one fresh pass (DGS's own iterator)."""
    for index, batch in enumerate(loader):
        if index >= limit:
            return
        yield batch


def train(
    cfg: Config,
    arch: Architecture,
    train_set: Dataset,
    val_set: Dataset,
    out_dir: Path,
    ctx: DistContext,
    ann: bool = False,
    resume: bool = False,
    seed: int = 0,
) -> tuple[SpikingStereoNet, dict[str, Any]]:
    """Train, validate and checkpoint into ``out_dir``; returns this rank's network and the last epoch's row."""
    out_dir = Path(out_dir)
    for split, dataset in (("training", train_set), ("validation", val_set)):
        if len(dataset) == 0:
            raise UserError(f"the {split} split is empty (check --data and data.max_*_examples)")
    show = ctx.is_main
    device = ctx.device
    ckpt = None
    if resume:
        ckpt = load_checkpoint(out_dir / LAST_CHECKPOINT_NAME, "cpu")
        if "optimizer" not in ckpt:
            raise UserError(f"{out_dir / LAST_CHECKPOINT_NAME}: has no optimiser state, cannot resume")
        if bool(ckpt["ann"]) != ann:
            raise UserError(f"{out_dir / LAST_CHECKPOINT_NAME}: was trained with ann={ckpt['ann']}, "
                            f"resume it {'with' if ckpt['ann'] else 'without'} --ann")
        arch = architecture_from_dict(ckpt["architecture"], f"{out_dir / LAST_CHECKPOINT_NAME} (embedded architecture)")

    seed_everything(seed)
    raw = SpikingStereoNet(arch, in_channels=train_set.in_channels, ann=ann).to(device)
    optimizer = torch.optim.Adam(raw.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.train.milestones, cfg.train.lr_gamma)
    dgs = DGSScheduler(cfg.dgs) if cfg.dgs.enabled and not ann else None
    start_epoch, best_mde = 0, math.inf
    if ckpt is not None:
        raw.load_state_dict(ckpt["model_state"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        if dgs is not None:
            dgs.history = list(ckpt.get("dgs_history", []))
        start_epoch, best_mde = int(ckpt["epoch"]), float(ckpt["best_val_mde_px"])
    model = DistributedDataParallel(raw, device_ids=[device.index] if device.type == "cuda" else None) if ctx.enabled else raw

    sampler, train_loader, val_loader = make_loaders(train_set, val_set, cfg, ctx, seed)
    fields = {"config": config_to_dict(cfg), "ann": ann, "in_channels": int(train_set.in_channels),
              "num_bins": int(train_set.num_bins), "encoding": str(train_set.encoding)}
    writer = _open_writer(out_dir, start_epoch) if ctx.is_main else None
    if show:
        print(f"training {'ANN twin' if ann else 'SNN'}: {sum(p.numel() for p in raw.parameters()):,} weights, "
              f"{len(train_set)} train / {len(val_set)} val examples, epochs {start_epoch + 1}..{cfg.train.epochs}, "
              f"{ctx.world_size} process(es) on {device}, writing {out_dir}")
        if start_epoch >= cfg.train.epochs:
            print(f"{out_dir / LAST_CHECKPOINT_NAME} already has {start_epoch} epochs (train.epochs = {cfg.train.epochs}): "
                  "nothing to do; raise train.epochs to continue")
    row: dict[str, Any] = {}
    focal_baseline = float(getattr(val_set, "focal_baseline_px_m", 1.0))
    curve = LearningCurve(out_dir / CURVE_CSV, start_epoch * len(train_loader), ckpt, ctx.is_main)
    for epoch in range(start_epoch, cfg.train.epochs):
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        if hasattr(train_set, "set_epoch"):  # random crops drawn from (seed, epoch): exact --resume
            train_set.set_epoch(epoch)
        raw.train()  # before DGS too: validation left the network in eval mode
        if dgs is not None and dgs.should_run(epoch):
            dgs.run(raw, dgs_batches(train_loader, cfg.dgs.max_batches), dgs_loss(device))
        total_loss, steps = 0.0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", leave=False, disable=not show)
        for batch in bar:
            step_started = time.perf_counter()
            loss = training_loss(model, raw, to_device(batch, device), cfg, ann)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.train.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.train.grad_clip)
            optimizer.step()
            total_loss, steps = total_loss + loss.item(), steps + 1
            curve.add_step(loss.item(), time.perf_counter() - step_started)
            if steps % max(cfg.train.log_every, 1) == 0:
                bar.set_postfix(loss=f"{total_loss / steps:.3f}")
            if cfg.train.val_every_steps > 0 and curve.step % cfg.train.val_every_steps == 0:
                curve.record(epoch + 1, validate(raw, val_loader, focal_baseline, ctx, ann, show=False), ctx)
                raw.train()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        train_loss = float(all_reduce_sum(torch.tensor([total_loss / max(steps, 1)], device=device), ctx)) / ctx.world_size
        if cfg.train.precise_bn_batches > 0:
            recalibrate_batchnorm(raw, train_loader, cfg.train.precise_bn_batches, ctx)
        val = validate(raw, val_loader, focal_baseline, ctx, ann, show)
        if cfg.train.val_every_steps > 0 and curve.step % cfg.train.val_every_steps:
            curve.record(epoch + 1, val, ctx)  # the epoch's end is a point of the curve too
        if math.isnan(val["mde_px"]):  # no validation image has valid ground truth: nothing to select by
            improved = math.isinf(best_mde)  # best.pt follows the last epoch until a real validation exists
            if show:
                print(f"warning: epoch {epoch + 1}: no validation image has valid ground truth; best.pt is the "
                      "latest epoch, not a selected one")
        else:
            improved = val["mde_px"] < best_mde or math.isinf(best_mde)  # best.pt exists from epoch 1 on
            best_mde = val["mde_px"] if improved else best_mde
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "val_mde_px": val["mde_px"],
               "val_1pa": val["1pa"], "val_images": val["images"],
               "mean_rate": sum(val["rates"].values()) / len(val["rates"]) if val["rates"] else 0.0,
               "epoch_time_s": time.perf_counter() - started}
        row.update({f"rate/{name}": rate for name, rate in val["rates"].items()})
        row.update({f"b/{name}": b for name, b in current_lif_b(raw).items()})
        if ctx.is_main:
            payload = model_payload(raw, arch.to_dict(), epoch=epoch + 1, best_val_mde_px=best_mde, **fields)
            if improved:
                save_checkpoint(out_dir / BEST_CHECKPOINT_NAME, payload)
            save_checkpoint(out_dir / LAST_CHECKPOINT_NAME, {
                **payload, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": rng_state(), "dgs_history": dgs.history if dgs is not None else [],
                "train_time_s": curve.train_time_s,
            })
            write_json_atomic(out_dir / "architecture.json", payload["architecture"])
            if dgs is not None:
                dgs.save_history(out_dir / "dgs_history.json")
            _log(out_dir / METRICS_CSV, writer, row, fresh=epoch == 0)
            rate_text = "" if ann else f"mean rate {row['mean_rate']:.3f}, "
            print(f"epoch {epoch + 1}/{cfg.train.epochs}: loss {train_loss:.4f}, val MDE {val['mde_px']:.3f} px, "
                  f"1PA {val['1pa']:.1f} % ({val['images']} images), {rate_text}"
                  f"{row['epoch_time_s']:.0f} s{' (best)' if improved else ''}")
    if writer is not None:
        writer.close()
    return raw, row


class LearningCurve:
    """Validation MDE against optimiser step and training seconds (validation time excluded): curve.csv.

    Each row: step, epoch, train_time_s, train_loss (mean since the previous row), val_mde_px, val_1pa.
    On resume the clock continues from the checkpoint and rows after its step are dropped.
    """

    def __init__(self, path: Path, start_step: int, ckpt: dict[str, Any] | None, write: bool) -> None:
        self.path, self.step, self.write = path, start_step, write
        self.train_time_s = float(ckpt.get("train_time_s", 0.0)) if ckpt else 0.0
        self._losses: list[float] = []
        self.rows = [r for r in _read_rows(path) if int(r["step"]) <= start_step] if ckpt else []

    def add_step(self, loss: float, seconds: float) -> None:
        self.step += 1
        self.train_time_s += seconds
        self._losses.append(loss)

    def record(self, epoch: int, val: dict[str, Any], ctx: DistContext) -> None:
        loss = float(all_reduce_sum(torch.tensor([sum(self._losses) / max(len(self._losses), 1)], device=ctx.device),
                                    ctx)) / ctx.world_size
        self._losses = []
        self.rows.append({"step": self.step, "epoch": epoch, "train_time_s": round(self.train_time_s, 3),
                          "train_loss": loss, "val_mde_px": val["mde_px"], "val_1pa": val["1pa"]})
        if self.write:
            _write_rows(self.path, self.rows)


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        out = csv.DictWriter(handle, fieldnames=list(rows[-1]))
        out.writeheader()
        out.writerows(rows)


def diagnose(cfg: Config, arch: Architecture, train_set: Dataset, device: torch.device, seed: int) -> str:
    """The health report (models.health) of a freshly built SNN on the first training batch."""
    seed_everything(seed)
    net = SpikingStereoNet(arch, in_channels=train_set.in_channels).to(device).train()
    batch = to_device(next(iter(DataLoader(train_set, batch_size=cfg.train.batch_size))), device)
    rows = layer_health(net, lambda: disparity_loss(net(batch["left"], batch["right"]), batch))
    return health_report(rows)


def dgs_loss(device: torch.device):
    """DGS's loss_fn(model, batch): the disparity loss of a (possibly layer-swapped) network."""
    def loss_fn(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        batch = to_device(batch, device)
        return disparity_loss(model(batch["left"], batch["right"]), batch)
    return loss_fn


def _open_writer(out_dir: Path, start_epoch: int):
    """TensorBoard writer; events at or after the resumed epoch are dropped (purge_step)."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out_dir / "tensorboard"), purge_step=start_epoch + 1)


def _log(csv_path: Path, writer, row: dict[str, Any], fresh: bool) -> None:
    """Append a CSV row (a new file at epoch 1) and the same scalars to TensorBoard."""
    rows = [] if fresh else _read_rows(csv_path)
    _write_rows(csv_path, [r for r in rows if int(r["epoch"]) < row["epoch"]] + [row])
    for key, value in row.items():
        if key != "epoch":
            writer.add_scalar(key, value, row["epoch"])
    writer.flush()


