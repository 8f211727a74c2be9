"""Retraining a searched architecture (SPEC §5, §7): the loop behind ``stereo/train.py``.

Read top to bottom: build the network (SNN or its ANN twin) from the architecture; Adam with step
decay; then the shared epoch loop (stereo/loop.py) with one Adam step per batch: smooth-L1 on valid
pixels of random crops (+ the optional firing-rate penalty). After each epoch's validation on full
frames: ``last.pt`` (with everything ``--resume`` needs), ``best.pt`` by validation MDE, a CSV row
and TensorBoard scalars. Under torchrun every rank trains its shard (DDP); rank 0 writes.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from common.atomic import write_json_atomic
from common.errors import UserError
from common.paths import (
    ARCHITECTURE_NAME,
    BEST_CHECKPOINT_NAME,
    CURVE_CSV_NAME,
    DGS_HISTORY_NAME,
    EPOCH_CHECKPOINT_DIR,
    LAST_CHECKPOINT_NAME,
    METRICS_CSV_NAME,
    TENSORBOARD_DIR_NAME,
)
from data_tools.dataset import check_max_disparity
from models.arch import Architecture, architecture_from_dict
from models.cost_volume import cost_volume_channels
from models.dgs import DGSScheduler
from models.health import health_report, layer_health
from models.stereo_net import SpikingStereoNet, current_lif_b
from models.topology import PAD_MULTIPLE
from stereo.averaging import WeightAverage
from stereo.checkpoint import (
    keep_epoch_checkpoint,
    load_checkpoint,
    model_payload,
    rng_state,
    save_checkpoint,
    set_rng_state,
    state_mismatch,
)
from stereo.config import Config, config_to_dict, rate_penalty_of
from stereo.distillation import open_teacher, teacher_input_format
from stereo.distributed import DistContext
from stereo.loop import (
    EpochLoop,
    EpochResult,
    LearningCurve,
    make_loaders,
    read_csv_rows,
    run_epochs,
    write_csv_rows,
)
from stereo.losses import disparity_loss, training_loss
from stereo.runtime import seed_everything, to_device
from stereo.volume_supervision import VolumeHead


def open_datasets(prepared_dir: Path, cfg: Config, seed: int) -> tuple[Dataset, Dataset]:
    """Training set (random crops) and validation set (full frames) of a prepared dataset."""
    from data_tools.dataset import StereoEventDataset

    crop = (cfg.data.crop_height, cfg.data.crop_width)
    if any(size <= 0 or size % PAD_MULTIPLE for size in crop):
        raise UserError(f"data.crop_height/crop_width must be positive multiples of {PAD_MULTIPLE}, got {crop}")
    common = {"num_bins": cfg.data.num_bins, "encoding": cfg.data.encoding, "seed": seed}
    train_set = StereoEventDataset(prepared_dir, "train", crop=crop, max_examples=cfg.data.max_train_examples,
                                   augment=tuple(cfg.data.augment), teacher_input=teacher_input_format(cfg.train.teacher),
                                   **common)
    val_set = StereoEventDataset(prepared_dir, "val", max_examples=cfg.data.max_val_examples, **common)
    return train_set, val_set


def _resume_checkpoint(out_dir: Path, ann: bool) -> dict[str, Any]:
    path = out_dir / LAST_CHECKPOINT_NAME
    ckpt = load_checkpoint(path, "cpu")
    if "optimizer" not in ckpt:
        raise UserError(f"{path}: has no optimiser state, cannot resume")
    if bool(ckpt["ann"]) != ann:
        raise UserError(f"{path}: was trained with ann={ckpt['ann']}, resume it {'with' if ckpt['ann'] else 'without'} --ann")
    return ckpt


def _init_checkpoint(path: Path, ann: bool) -> dict[str, Any]:
    ckpt = load_checkpoint(path, "cpu")
    if bool(ckpt["ann"]) != ann:
        raise UserError(f"{path}: is {'an ANN twin' if ckpt['ann'] else 'an SNN'} checkpoint; "
                        f"train it {'with' if ckpt['ann'] else 'without'} --ann")
    return ckpt


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
    init: Path | None = None,
) -> tuple[SpikingStereoNet, dict[str, Any]]:
    """Train, validate and checkpoint into ``out_dir``; returns this rank's network and the last epoch's row.

    ``init``: start from that checkpoint's weights and architecture (fine-tuning, e.g. with a rate
    penalty), with a fresh optimiser and schedule; ``resume`` instead continues ``out_dir/last.pt``.
    """
    out_dir = Path(out_dir)
    for split, dataset in (("training", train_set), ("validation", val_set)):
        if len(dataset) == 0:
            raise UserError(f"the {split} split is empty (check --data and data.max_*_examples)")
    t = cfg.train
    if resume and init is not None:
        raise UserError("--init and --resume exclude each other: --resume continues OUT/last.pt, which started from --init")
    ckpt = _resume_checkpoint(out_dir, ann) if resume else None
    start = _init_checkpoint(init, ann) if init is not None else ckpt
    if start is not None:
        where = init if init is not None else out_dir / LAST_CHECKPOINT_NAME
        arch = architecture_from_dict(start["architecture"], f"{where} (embedded architecture)")

    if (manifest := getattr(train_set, "manifest", None)) is not None:
        check_max_disparity(manifest, arch.max_disparity_px, "the architecture", train_set.prepared_dir)
    seed_everything(seed)
    raw = SpikingStereoNet(arch, in_channels=train_set.in_channels, ann=ann).to(ctx.device)
    volume_channels = cost_volume_channels(arch.cost_volume, raw.feature.out_channels)
    volume_head = VolumeHead(volume_channels, arch.max_disparity_px).to(ctx.device) if t.volume_weight > 0 else None
    trained = [*raw.parameters(), *(volume_head.parameters() if volume_head is not None else [])]
    optimizer = torch.optim.Adam(trained, lr=t.lr, weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, t.milestones, t.lr_gamma)
    dgs = DGSScheduler(cfg.dgs) if cfg.dgs.enabled and not ann else None
    start_epoch, best = 0, {"mde_px": math.inf}
    if init is not None:
        if (problem := state_mismatch(raw.state_dict(), start["model_state"])) is not None:
            raise UserError(f"{init}: weights do not fit the embedded architecture ({problem})")
        raw.load_state_dict(start["model_state"])
        if not ann and int(start["num_bins"]) != int(train_set.num_bins) and ctx.is_main:
            print(f"note: {init} was trained at T = {int(start['num_bins'])} time steps; fine-tuning it at "
                  f"T = {int(train_set.num_bins)} (data.num_bins)")
    average = WeightAverage(raw, t.ema_decay) if t.ema_decay > 0 else None
    validated = raw if average is None else average.module  # what is validated and saved as model_state
    if ckpt is not None:
        raw.load_state_dict(ckpt.get("raw_model_state", ckpt["model_state"]))
        if average is not None and "raw_model_state" in ckpt:
            average.restore(ckpt["model_state"], int(ckpt["ema_steps"]))
        restore_volume_head(volume_head, ckpt, out_dir / LAST_CHECKPOINT_NAME)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        follow_configured_schedule(scheduler, t.milestones, t.lr_gamma)
        set_rng_state(ckpt["rng"])
        if dgs is not None:
            dgs.history = list(ckpt.get("dgs_history", []))
        start_epoch, best["mde_px"] = int(ckpt["epoch"]), float(ckpt["best_val_mde_px"])
    model, volume_model = (_distributed(module, ctx) for module in (raw, volume_head))
    sampler, train_loader, val_loader = make_loaders(train_set, val_set, t.batch_size, cfg.eval.batch_size,
                                                     cfg.data.num_workers, ctx, seed)
    rate = None if ann else rate_penalty_of(t)
    teacher = open_teacher(t.teacher, ctx.device, raw)
    if teacher is not None and getattr(train_set, "teacher_input", None) != teacher.input_format:
        raise UserError(f"train.teacher {t.teacher}: the training set must also carry the teacher's input "
                        f"(num_bins, encoding) = {teacher.input_format} (StereoEventDataset(teacher_input=...), as open_datasets does)")

    def step(batch: dict[str, Any], epoch: int, index: int) -> dict[str, float]:
        loss = training_loss(model, raw, batch, rate, index, t.loss, teacher, t.distill_weight, volume_model,
                             t.volume_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(trained, t.grad_clip)
        optimizer.step()
        if average is not None:
            average.update()
        return {"loss": loss.item()}

    fields = {"config": config_to_dict(cfg), "ann": ann, "in_channels": int(train_set.in_channels),
              "num_bins": int(train_set.num_bins), "encoding": str(train_set.encoding)}
    writer = _open_writer(out_dir, start_epoch) if ctx.is_main else None
    curve = LearningCurve(out_dir / CURVE_CSV_NAME, start_epoch * len(train_loader), ckpt, ctx.is_main)
    last_row: dict[str, Any] = {}

    def end_epoch(result: EpochResult) -> None:
        val = result.val
        if math.isnan(val["mde_px"]):  # no validation image has valid ground truth: nothing to select by
            improved = math.isinf(best["mde_px"])  # best.pt follows the last epoch until a real validation exists
            if ctx.is_main:
                print(f"warning: epoch {result.epoch}: no validation image has valid ground truth; best.pt is the "
                      "latest epoch, not a selected one")
        else:
            improved = val["mde_px"] < best["mde_px"] or math.isinf(best["mde_px"])  # best.pt exists from epoch 1 on
            best["mde_px"] = val["mde_px"] if improved else best["mde_px"]
        row = {"epoch": result.epoch, "lr": result.lr, "train_loss": result.losses.get("loss", math.nan),
               "val_mde_px": val["mde_px"], "val_1pa": val["1pa"], "val_images": val["images"],
               "mean_rate": sum(val["rates"].values()) / len(val["rates"]) if val["rates"] else 0.0,
               "epoch_time_s": result.seconds}
        row.update({f"rate/{name}": rate for name, rate in val["rates"].items()})
        row.update({f"b/{name}": b for name, b in current_lif_b(raw).items()})
        last_row.clear()
        last_row.update(row)
        if not ctx.is_main:
            return
        payload = model_payload(validated, arch.to_dict(), epoch=result.epoch, best_val_mde_px=best["mde_px"],
                                **fields)
        if improved:
            save_checkpoint(out_dir / BEST_CHECKPOINT_NAME, payload)
        if t.keep_epoch_checkpoints:
            keep_epoch_checkpoint(out_dir / EPOCH_CHECKPOINT_DIR, result.epoch, payload, t.keep_epoch_checkpoints)
        resume_state = {} if average is None else {"raw_model_state": raw.state_dict(), "ema_steps": average.steps}
        if volume_head is not None:
            resume_state["volume_head_state"] = volume_head.state_dict()
        save_checkpoint(out_dir / LAST_CHECKPOINT_NAME, {
            **payload, **resume_state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "rng": rng_state(), "dgs_history": dgs.history if dgs is not None else [],
            "train_time_s": curve.train_time_s,
        })
        write_json_atomic(out_dir / ARCHITECTURE_NAME, payload["architecture"])
        if dgs is not None:
            dgs.save_history(out_dir / DGS_HISTORY_NAME)
        _log(out_dir / METRICS_CSV_NAME, writer, row, fresh=result.epoch == 1)
        rate_text = "" if ann else f"mean rate {row['mean_rate']:.3f}, "
        print(f"epoch {result.epoch}/{t.epochs}: loss {row['train_loss']:.4f}, val MDE {val['mde_px']:.3f} px, "
              f"1PA {val['1pa']:.1f} % ({val['images']} images), {rate_text}"
              f"{result.seconds:.0f} s{' (best)' if improved else ''}")

    if ctx.is_main:
        print(f"training {'ANN twin' if ann else 'SNN'}: {sum(p.numel() for p in raw.parameters()):,} weights, "
              f"{len(train_set)} train / {len(val_set)} val examples, epochs {start_epoch + 1}..{t.epochs}, "
              f"{ctx.world_size} process(es) on {ctx.device}, writing {out_dir}")
        if start_epoch >= t.epochs:
            print(f"{out_dir / LAST_CHECKPOINT_NAME} already has {start_epoch} epochs (train.epochs = {t.epochs}): "
                  "nothing to do; raise train.epochs to continue")
    loop = EpochLoop(raw=raw, step=step, end_epoch=end_epoch, train_loader=train_loader, val_loader=val_loader,
                     samplers=[sampler], crop_dataset=train_set, schedulers=[scheduler], epochs=t.epochs,
                     focal_baseline_px_m=float(getattr(val_set, "focal_baseline_px_m", 1.0)), ann=ann, dgs=dgs,
                     dgs_max_batches=cfg.dgs.max_batches, loss=t.loss, precise_bn_batches=t.precise_bn_batches,
                     val_every_steps=t.val_every_steps, log_every=t.log_every, desc="epoch", curve=curve,
                     evaluated=validated)
    run_epochs(loop, start_epoch, ctx)
    if writer is not None:
        writer.close()
    return raw, last_row


def _distributed(module: nn.Module | None, ctx: DistContext) -> nn.Module | None:
    """``module`` wrapped in DDP under torchrun (its gradients averaged over ranks), else itself."""
    if module is None or not ctx.enabled:
        return module
    return DistributedDataParallel(module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def restore_volume_head(volume_head: VolumeHead | None, ckpt: dict[str, Any], path: Path) -> None:
    """Load the volume head's state on resume; a run resumed with volume supervision switched on or off
    would not fit its saved optimiser state."""
    saved = ckpt.get("volume_head_state")
    if (saved is None) != (volume_head is None):
        raise UserError(f"{path}: was trained {'without' if saved is None else 'with'} train.volume_weight > 0; "
                        "resume it with the same setting")
    if volume_head is not None:
        volume_head.load_state_dict(saved)


def follow_configured_schedule(scheduler: torch.optim.lr_scheduler.MultiStepLR, milestones: list[int],
                               gamma: float) -> None:
    """Put a resumed run on the configured step schedule, so that a finished run can be extended.

    A saved MultiStepLR state carries the milestones it was built with. A run resumed with more epochs
    and a further milestone (``train.milestones``) must lower the rate there, as a run started on that
    schedule would have; the next epoch's rate is MultiStepLR's closed form at the saved epoch.
    """
    scheduler.milestones = Counter(milestones)
    scheduler.gamma = gamma
    passed = bisect_right(sorted(milestones), scheduler.last_epoch)
    for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
        group["lr"] = base * gamma ** passed
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def diagnose(cfg: Config, arch: Architecture, train_set: Dataset, device: torch.device, seed: int) -> str:
    """The health report (models.health) of a freshly built SNN on the first training batch."""
    seed_everything(seed)
    net = SpikingStereoNet(arch, in_channels=train_set.in_channels).to(device).train()
    batch = to_device(next(iter(DataLoader(train_set, batch_size=cfg.train.batch_size))), device)
    rows = layer_health(net, lambda: disparity_loss(net(batch["left"], batch["right"]), batch, cfg.train.loss))
    return health_report(rows)


def _open_writer(out_dir: Path, start_epoch: int):
    """TensorBoard writer; events at or after the resumed epoch are dropped (purge_step)."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out_dir / TENSORBOARD_DIR_NAME), purge_step=start_epoch + 1)


def _log(csv_path: Path, writer: Any, row: dict[str, Any], fresh: bool) -> None:
    """Append a CSV row (a new file at epoch 1) and the same scalars to TensorBoard."""
    rows = [] if fresh else read_csv_rows(csv_path)
    write_csv_rows(csv_path, [r for r in rows if int(r["epoch"]) < row["epoch"]] + [row])
    for key, value in row.items():
        if key != "epoch":
            writer.add_scalar(key, value, row["epoch"])
    writer.flush()
