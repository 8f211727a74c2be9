"""Synaptic operations and MACs per layer with spikingjelly 2.0's op_counter (SPEC §9).

The counted network is a deep copy with every BatchNorm folded into the conv before it, so BN
costs nothing (as on a chip, where it is folded into the weights and thresholds). Both counters
watch every forward under one ``DispatchCounterMode``: ``SynOpCounter`` counts a conv or linear
whose input is exactly binary (Σ input spikes × fan-out), ``MACCounter`` one whose input is not
(dense MACs) and returns 0 for binary input, so each call is counted by exactly one of them.
``dense_macs=True`` counts every conv and linear densely as MACs (the ANN twin: an ANN chip does
not skip zeros, and a twin input that happens to be 0/1 must not become synaptic operations).
Counts are attributed to the conv/linear module that ran them; anything counted elsewhere lands in
the ``(other)`` row so that the per-layer rows always add up to the total.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from math import prod

import torch
from spikingjelly.activation_based.op_counter import DispatchCounterMode, MACCounter, SynOpCounter
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils.fusion import fuse_conv_bn_eval

aten = torch.ops.aten
OTHER_LAYER = "(other)"


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with each BN folded into its preceding conv and replaced by Identity.

    Covers the two ways the project wires conv then BN: attributes ``conv``/``bn`` of one module
    (``ConvBNLIF``) and adjacent entries of an ``nn.Sequential``.
    """
    folded = copy.deepcopy(model).eval()
    for module in list(folded.modules()):
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, _ConvNd) and isinstance(bn, _BatchNorm):
            module.conv = fuse_conv_bn_eval(conv, bn)
            module.bn = nn.Identity()
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], _ConvNd) and isinstance(module[i + 1], _BatchNorm):
                    module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
    return folded


def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every conv and linear by qualified name: the layers that cost synaptic operations or MACs."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (_ConvNd, nn.Linear))}


def _dense_mm(args, kwargs, out):
    x, y = args[-2:] if len(args) == 3 else args[:2]
    return prod(x.shape[:-1]) * y.shape[-1] * x.shape[-1]


def _dense_convolution(args, kwargs, out):
    x, w, transposed = args[0], args[1], args[6]
    spatial = x.shape[2:] if transposed else out.shape[2:]
    return x.shape[0] * prod(spatial) * w.shape[0] * prod(w.shape[1:])


class DenseMACCounter(MACCounter):
    """MACs of every conv/linear whatever its input (the ANN twin's cost); BN is not counted."""

    def __init__(self) -> None:
        super().__init__()
        self.rules = {
            aten.mm.default: _dense_mm,
            aten.addmm.default: _dense_mm,
            aten.bmm.default: _dense_mm,
            aten.baddbmm.default: _dense_mm,
            aten.convolution.default: _dense_convolution,
        }


@dataclass
class LayerCount:
    """One conv/linear layer's operations summed over all counted inferences."""

    name: str
    synops: int
    macs: int
    calls: int
    binary_calls: int
    input_nonzero: int
    input_elements: int

    @property
    def kind(self) -> str:
        """SOP (spike-driven), MAC (fed non-binary values), both, or '-' when never called."""
        if self.calls == 0:
            return "-"
        if self.binary_calls == self.calls:
            return "SOP"
        return "MAC" if self.binary_calls == 0 else "SOP+MAC"

    @property
    def input_rate(self) -> float:
        """Fraction of non-zero inputs: the firing rate feeding a spiking layer."""
        return self.input_nonzero / self.input_elements if self.input_elements else 0.0

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "kind": self.kind, "input_rate": self.input_rate}


@dataclass
class OpCounts:
    layers: list[LayerCount]
    num_inferences: int

    @property
    def total_synops(self) -> int:
        return sum(layer.synops for layer in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)


def _is_binary(x: torch.Tensor) -> bool:
    return bool(x.eq(0).logical_or(x.eq(1)).all())


def _scope_totals(counter, root: str, names: Iterable[str]) -> tuple[dict[str, int], int]:
    counts = counter.get_counts()
    per_layer = {name: int(sum(counts.get(f"{root}.{name}", {}).values())) for name in names}
    return per_layer, int(counter.get_total())


@torch.no_grad()
def count_operations(
    model: nn.Module, inputs: Iterable[tuple[torch.Tensor, ...]], fold_bn: bool = True, dense_macs: bool = False
) -> OpCounts:
    """Run ``model(*args)`` on every input tuple (one inference each) and count per layer."""
    net = fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()
    layers = weight_layers(net)
    stats = {name: [0, 0, 0, 0] for name in layers}  # calls, binary calls, nonzero, elements

    def make_hook(name: str):
        def hook(module, args):
            x = args[0]
            entry = stats[name]
            entry[0] += 1
            entry[1] += int(_is_binary(x))
            entry[2] += int(x.count_nonzero())
            entry[3] += x.numel()
        return hook

    handles = [m.register_forward_pre_hook(make_hook(name)) for name, m in layers.items()]
    synop = None if dense_macs else SynOpCounter()
    mac = DenseMACCounter() if dense_macs else MACCounter()
    counters = [c for c in (synop, mac) if c is not None]
    num_inferences = 0
    try:
        with DispatchCounterMode(counters):
            for args in inputs:
                net(*args)
                num_inferences += 1
    finally:
        for handle in handles:
            handle.remove()
    root = type(net).__name__
    synops, synop_total = _scope_totals(synop, root, layers) if synop else ({n: 0 for n in layers}, 0)
    macs, mac_total = _scope_totals(mac, root, layers)
    rows = [LayerCount(name, synops[name], macs[name], *stats[name]) for name in layers]
    other_synops, other_macs = synop_total - sum(synops.values()), mac_total - sum(macs.values())
    if other_synops or other_macs:
        rows.append(LayerCount(OTHER_LAYER, other_synops, other_macs, 0, 0, 0, 0))
    return OpCounts(rows, num_inferences)
