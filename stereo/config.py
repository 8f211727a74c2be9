"""One typed configuration for search, training, evaluation and energy, loaded from YAML.

A YAML file may hold any subset of the sections below; ``--set section.key=value`` on the
command line overrides single values (parsed as YAML, so ``--set train.milestones=[5,10]``
works). Unknown sections or keys are user errors that name the file and the key. The whole
config is saved inside every checkpoint as plain data (``config_to_dict``).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from common.errors import UserError
from data_tools.constants import DEFAULT_NUM_BINS, NETWORK_MAX_DISPARITY_PX
from data_tools.dataset import AUGMENTATIONS
from models.arch import DEFAULT_READOUT, READOUTS
from models.cost_volume import COST_VOLUMES
from models.dgs import DGSConfig
from stereo.losses import DEFAULT_DISPARITY_LOSS, DISPARITY_LOSSES, RatePenalty
from stereo.runtime import resolve_device, seed_everything


@dataclass
class DataConfig:
    num_bins: int = DEFAULT_NUM_BINS
    encoding: str = "binary"  # binary | count | signed
    crop_height: int = 192
    crop_width: int = 288
    num_workers: int = 0
    max_train_examples: int = 0  # 0 = all; small values keep demos short
    max_val_examples: int = 0
    augment: list[str] = field(default_factory=list)  # training crops: any of "vflip", "polarity" (data_tools.dataset)


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int = 2
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = DEFAULT_DISPARITY_LOSS  # smooth_l1 (SPEC §7) | l1 (stereo.losses.DISPARITY_LOSSES)
    milestones: list[int] = field(default_factory=lambda: [50, 100, 150])
    lr_gamma: float = 0.5
    rate_penalty: float = 0.0  # lambda_rate * mean firing rate of the chosen LIF layers (SPEC §7)
    rate_layers: list[str] = field(default_factory=lambda: ["feature", "matching"])  # module-name prefixes
    # The penalty's schedule (stereo.losses.RatePenalty): off before optimiser step rate_start_step
    # (e.g. until the network has left the plateau), then ramped linearly to rate_penalty over
    # rate_ramp_steps steps (0 = at once). Each layer is penalised only above its target rate:
    # rate_layer_targets entries "prefix=rate" (longest module-name prefix wins, e.g.
    # ["feature.stem=0.15", "matching=0.05"]), every other layer above rate_target (0 = the plain mean).
    rate_start_step: int = 0
    rate_ramp_steps: int = 0
    rate_target: float = 0.0
    rate_layer_targets: list[str] = field(default_factory=list)
    grad_clip: float = 0.0
    # Distillation (stereo.distillation): a trained network's checkpoint, e.g. the ANN twin's best.pt,
    # whose distribution over disparity the network is also trained to match, with this weight on the
    # KL term; "" = off. The teacher reads its own input format, voxelised from the same crops.
    teacher: str = ""
    distill_weight: float = 1.0
    # Deep supervision from the cost volume (stereo.volume_supervision): this weight x the disparity loss
    # of a training-only 1x1x1 head on the volume; 0 = off. It gives the feature net a short gradient path.
    volume_weight: float = 0.0
    # Validate and save an exponential moving average of the weights (stereo.averaging), decay per
    # optimiser step, e.g. 0.99 (an average over the last ~100 steps); 0 = off, the raw weights.
    ema_decay: float = 0.0
    log_every: int = 10
    # Learning curves: also validate every this many optimiser steps (0 = at epoch ends only), each
    # point a row of curve.csv (step, training seconds, validation MDE). Short runs need it to show
    # when a network leaves the constant-prediction plateau.
    val_every_steps: int = 0
    # "precise BN": before each validation, re-estimate BN statistics on this many training batches
    # (0 = keep the running averages). Short runs need it: a spiking layer fed BN's start values
    # (mean 0, var 1) stays silent in eval mode until the running averages have caught up.
    precise_bn_batches: int = 0
    # Keep the validated weights of the last this many epochs as epochs/epoch_NNN.pt (0 = none), for
    # averaging checkpoints afterwards (stereo/average_checkpoints.py); older ones are deleted as it goes.
    keep_epoch_checkpoints: int = 0


@dataclass
class SearchConfig:
    epochs: int = 10
    batch_size: int = 1
    feature_layers: int = 2
    matching_layers: int = 4
    filter_multiplier: int = 4
    block_multiplier: int = 3
    steps: int = 3
    max_disparity_px: int = NETWORK_MAX_DISPARITY_PX
    cost_volume: str = "correlation"  # correlation (AND of spikes) | concat
    membrane_shortcuts: bool = True  # currents along edges and across cells (models/cells.py)
    readout: str = DEFAULT_READOUT  # spikes | current: what the cost head reads of the matching fuse (models/arch.py)
    weight_lr: float = 2e-3
    weight_lr_min: float = 1e-4
    weight_momentum: float = 0.9
    weight_decay: float = 3e-4
    arch_lr: float = 2e-3
    arch_weight_decay: float = 1e-3
    arch_start_epoch: int = 3
    rate_penalty: float = 0.0
    rate_layers: list[str] = field(default_factory=lambda: ["feature", "matching"])  # module-name prefixes
    # Energy-aware search: + energy_penalty x the expected synaptic energy per example in mJ (expected
    # SOPs of the mixed cells from alpha/beta and the measured spikes, x energy.e_ac_pj); 0 = off.
    energy_penalty: float = 0.0
    arch_init_std: float = 1e-3  # alpha/beta start near uniform (DARTS)
    grad_clip: float = 5.0  # max norm of the weight gradients; 0 = off
    use_dgs: bool = False  # run DGS (section dgs) during the search as well as in retraining
    retrain_filter_multiplier: int = 8  # channel sizes written into architecture.json for retraining
    precise_bn_batches: int = 0  # before each validation, BN statistics from this many half-A batches (0 = off)


@dataclass
class EvalConfig:
    mask: str = "both"  # dense | events | both
    include_empty: bool = False
    batch_size: int = 1
    max_examples: int = 0
    sgbm_tune_examples: int = 50  # validation examples the SGBM grid is tuned on (0 = all)
    viz_examples: int = 8  # panels written by --viz when no --viz-indices is given


@dataclass
class EnergyConfig:
    # SOP model (eval/energy_report.py): SOPs x e_ac_pj + MACs x e_mac_pj (45 nm, 32-bit float, Horowitz).
    e_ac_pj: float = 0.9
    e_mac_pj: float = 4.6
    num_examples: int = 8
    tradeoff_examples: int = 0  # examples for the MDE of the accuracy-energy picture (0 = whole split)
    # Memory model (eval/memory_energy.py: Lemaire et al. 2022 through spikingjelly; docs/energy_models.md),
    # spikingjelly's defaults. A 32-bit integer add and multiply (a MAC costs both), and the energy per byte
    # of an on-chip SRAM access by the size of the buffer accessed: linear from 0 pJ at 0 B through these
    # three sizes (10, 20, 100 pJ per 32-bit access), flat above 1 MiB. mem_fifo_elements: the spike FIFO
    # (32-bit events) each layer reads its input spikes from and writes its output spikes to.
    mem_e_add_pj: float = 0.1
    mem_e_mul_pj: float = 3.1
    mem_sram_8kib_pj_per_byte: float = 2.5
    mem_sram_32kib_pj_per_byte: float = 5.0
    mem_sram_1mib_pj_per_byte: float = 25.0
    mem_fifo_elements: int = 1000


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    dgs: DGSConfig = field(default_factory=DGSConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Check ``value`` against the type of the field's default; ints are accepted for floats."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list):
        ok = isinstance(value, list)
    else:
        ok = True
    if not ok:
        raise UserError(f"{where}: expected {type(default).__name__}, got {value!r}")
    return value


# Smallest allowed value of numeric keys (strictly greater for the floats marked "> 0"): checked when a
# value is set, so that a bad --set fails before anything is built or written.
_MINIMUM: dict[str, int | float] = {
    "data.num_bins": 1, "data.crop_height": 1, "data.crop_width": 1, "data.num_workers": 0,
    "data.max_train_examples": 0, "data.max_val_examples": 0,
    "train.epochs": 1, "train.batch_size": 1, "train.lr_gamma": 0.0, "train.rate_penalty": 0.0,
    "train.grad_clip": 0.0, "train.log_every": 1, "train.precise_bn_batches": 0, "train.val_every_steps": 0,
    "train.weight_decay": 0.0, "train.rate_start_step": 0, "train.rate_ramp_steps": 0, "train.rate_target": 0.0,
    "train.ema_decay": 0.0, "train.distill_weight": 0.0, "train.volume_weight": 0.0, "train.keep_epoch_checkpoints": 0,
    "search.epochs": 1, "search.batch_size": 1, "search.feature_layers": 1, "search.matching_layers": 1,
    "search.filter_multiplier": 1, "search.rate_penalty": 0.0, "search.energy_penalty": 0.0, "search.grad_clip": 0.0,
    "search.arch_start_epoch": 0, "search.precise_bn_batches": 0, "search.retrain_filter_multiplier": 1,
    "dgs.every_epochs": 1, "dgs.max_batches": 1,
    "eval.batch_size": 1, "eval.max_examples": 0, "eval.sgbm_tune_examples": 0, "eval.viz_examples": 0,
    "energy.num_examples": 1, "energy.tradeoff_examples": 0, "energy.e_ac_pj": 0.0, "energy.e_mac_pj": 0.0,
    "energy.mem_e_add_pj": 0.0, "energy.mem_e_mul_pj": 0.0, "energy.mem_sram_8kib_pj_per_byte": 0.0,
    "energy.mem_sram_32kib_pj_per_byte": 0.0, "energy.mem_sram_1mib_pj_per_byte": 0.0, "energy.mem_fifo_elements": 1,
}
_POSITIVE = {"train.lr", "search.weight_lr", "search.arch_lr", "dgs.alpha_lr", "dgs.candidate_lr"}
_CHOICES = {"data.encoding": ("binary", "count", "signed"), "eval.mask": ("dense", "events", "both"),
            "search.cost_volume": COST_VOLUMES, "search.readout": READOUTS, "train.loss": tuple(DISPARITY_LOSSES)}


def parse_layer_targets(items: list[Any], where: str) -> tuple[tuple[str, float], ...]:
    """``["prefix=rate", ...]`` -> ((prefix, rate), ...), each rate in [0, 1]."""
    parsed = []
    for item in items:
        prefix, _, rate = str(item).partition("=")
        try:
            value = float(rate)
        except ValueError:
            value = -1.0
        if not prefix or not 0.0 <= value <= 1.0:
            raise UserError(f"{where}: expected entries 'module.prefix=rate' with a rate in [0, 1], got {item!r}")
        parsed.append((prefix, value))
    return tuple(parsed)


def rate_penalty_of(train: TrainConfig) -> RatePenalty:
    """The retraining's firing-rate term and its schedule (section train)."""
    return RatePenalty(train.rate_penalty, tuple(train.rate_layers), train.rate_start_step, train.rate_ramp_steps,
                       train.rate_target, parse_layer_targets(train.rate_layer_targets, "train.rate_layer_targets"))


def _check_range(dotted: str, value: Any, where: str) -> None:
    if dotted == "train.rate_layer_targets":
        parse_layer_targets(value, where)
    if dotted == "data.augment" and (unknown := sorted(set(map(str, value)) - set(AUGMENTATIONS))):
        raise UserError(f"{where}: unknown augmentation {', '.join(unknown)} (known: {', '.join(AUGMENTATIONS)})")
    if dotted == "train.ema_decay" and value >= 1.0:
        raise UserError(f"{where}: a decay is below 1 (0 = off), got {value!r}")
    if dotted == "train.rate_target" and value > 1.0:
        raise UserError(f"{where}: a firing rate is at most 1, got {value!r}")
    if dotted in _MINIMUM and value < _MINIMUM[dotted]:
        raise UserError(f"{where}: must be at least {_MINIMUM[dotted]}, got {value!r}")
    if dotted in _POSITIVE and not value > 0:
        raise UserError(f"{where}: must be greater than 0, got {value!r}")
    if dotted in _CHOICES and value not in _CHOICES[dotted]:
        raise UserError(f"{where}: must be one of {', '.join(_CHOICES[dotted])}, got {value!r}")


def _apply(config: Config, section: str, key: str, value: Any, where: str) -> None:
    sections = {f.name for f in dataclasses.fields(config)}
    if section not in sections:
        raise UserError(f"{where}: unknown config section '{section}' (known: {', '.join(sorted(sections))})")
    target = getattr(config, section)
    keys = {f.name for f in dataclasses.fields(target)}
    if key not in keys:
        raise UserError(f"{where}: unknown key '{section}.{key}' (known: {', '.join(sorted(keys))})")
    value = _coerce(value, getattr(target, key), f"{where}: '{section}.{key}'")
    _check_range(f"{section}.{key}", value, f"{where}: '{section}.{key}'")
    setattr(target, key, value)


def config_from_dict(payload: dict[str, Any], where: str = "config") -> Config:
    """Build a Config from nested plain data (a YAML file or a checkpoint's embedded config)."""
    config = Config()
    if not isinstance(payload, dict):
        raise UserError(f"{where}: expected a mapping of sections, got {type(payload).__name__}")
    for section, values in payload.items():
        if not isinstance(values, dict):
            raise UserError(f"{where}: section '{section}' must be a mapping")
        for key, value in values.items():
            _apply(config, section, key, value, where)
    return config


def load_config(path: Path | str | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file (if any), then ``section.key=value`` overrides."""
    payload: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: config file not found")
        try:
            payload = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    config = config_from_dict(payload, str(path) if path else "config")
    for item in overrides or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise UserError(f"--set {item!r}: expected section.key=value, e.g. train.lr=1e-3")
        dotted, raw = item.split("=", 1)
        section, key = dotted.split(".", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise UserError(f"--set {item!r}: the value is not valid YAML ({str(err).splitlines()[0]}); "
                            "quote lists like train.milestones=[5,10]") from None
        _apply(config, section, key, value, f"--set {item}")
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested data (safe for ``torch.load(weights_only=True)`` and JSON)."""
    return dataclasses.asdict(config)


def add_config_arguments(parser: argparse.ArgumentParser, default_config: Path | str | None = None) -> None:
    """The shared --config / --set / --device / --seed options of every entry script."""
    parser.add_argument("--config", type=Path, default=default_config, help="YAML config file")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable), e.g. --set train.epochs=5",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--seed", type=int, default=0, help="random seed")


def start_cli(args: argparse.Namespace) -> tuple[Config, torch.device]:
    """The start-up every entry script shares, after parsing: load the config (``--config``, ``--set``),
    pick the device (``--device``) and seed everything (``--seed``)."""
    cfg = load_config(args.config, args.overrides)
    device = resolve_device(args.device)
    seed_everything(args.seed)
    return cfg, device
