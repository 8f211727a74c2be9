"""Energy with memory traffic (Lemaire et al. 2022), beside the SOP-only model of eval/energy_report.py.

Why a second model: counting only synaptic operations (SOPs x E_AC against MACs x E_MAC) leaves out
what often dominates on a chip: reading a weight for every synaptic event or MAC, and reading and
writing a membrane potential for every synaptic event and for every neuron at every time step.
Lemaire et al. 2022 ("An analytical estimation of spiking neural networks energy efficiency",
arXiv:2210.13107) count those accesses; spikingjelly 2.0 implements the paper as
``LemaireEnergyProfiler``, used here unchanged (docs/energy_models.md has the formulas).

Assumptions (the paper's and the library's, all configurable constants in the config section
``energy``, keys ``mem_*``):
- every value lives in on-chip SRAM, one buffer per kind and layer (inputs/outputs, weights,
  membranes); an access costs a per-byte energy that grows with the buffer's size (linear through
  2.5, 5 and 25 pJ/byte at 8 KiB, 32 KiB and 1 MiB, 45 nm), flat above 1 MiB: no DRAM is modelled,
  so the large buffers of this network (membranes and activations of many MiB) are priced as 1 MiB;
- weights, biases, membrane potentials, activations and spike events are 32-bit words (the library's
  fixed width, ``WORD_BITS``), arithmetic is 32-bit integer: add 0.1 pJ, multiply 3.1 pJ;
- BN is folded into the conv before it (as for the SOP model), its shift becoming the conv's bias,
  read and added for every output;
- a conv or linear fed exactly binary values is event-driven (per input spike: its fan-out of weight
  reads, membrane reads and writes, accumulations and address computations); otherwise dense (per
  MAC an input and a weight read). A LIF reads and writes each membrane once per step, multiplies it
  by the leak and writes its spikes to a 1000-event FIFO. The ANN twin has no neurons and writes each
  layer's output instead; its ReLU is free. Like the library, a twin layer whose input happens to be
  exactly 0/1 would be priced event-driven (the SOP model counts the twin densely whatever its input).

Adapter (why it exists): the profiler recognises a neuron only as spikingjelly's ``IFNode``/``LIFNode``
and reads its time steps from ``step_mode == "m"`` (T = the input's first axis). This project's
``MultiStepLIF`` is neither, so on its own the profiler would see no neuron at all: no membrane
updates, no leak, no spikes written, and each dense layer's output written out as an ANN's.
:class:`LemaireLIF` presents each LIF as a multi-step ``LIFNode`` that runs the wrapped layer
unchanged. Second, a conv's time steps come from the same ``step_mode``, but this project
folds T into the batch and calls a conv once on all steps, so the profiler would size the membrane
buffer a spike-fed conv updates (and so its SRAM cost per byte) as T steps' worth;
:class:`StepwiseConv` calls a ``ConvBN``'s conv once per step, as a chip runs it.

What the profiler does not see: functional ops outside a conv or linear module. Of those, only the
soft-argmin's expectation (the op counter's ``(other)`` row) costs MACs; they are added at this
model's MAC price (multiply + add), their memory traffic not modelled (a small share: about 0.05%
of the twin's MACs at 260x346). Element-wise sums between layers (node currents, membrane shortcuts,
the correlation cost volume, the mean over T) are counted by neither model.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
from spikingjelly.activation_based.neuron import LIFNode
from spikingjelly.activation_based.op_counter import (
    LemaireEnergyConfig,
    LemaireEnergyCostConfig,
    LemaireEnergyProfiler,
)
from torch import nn

from common.errors import UserError
from eval.energy_report import PJ_TO_MJ
from eval.opcount import OTHER_LAYER, OpCounts, fold_batchnorm
from models.neurons import ConvBN, MultiStepLIF
from stereo.config import EnergyConfig

WORD_BITS = 32  # the library's access width for every value (not configurable there)
SRAM_SIZES_BYTES = (8 * 1024, 32 * 1024, 1024 * 1024)
# modules the profiler prices, and modules that cost nothing: a folded BN or a skip edge (Identity),
# the ANN twin's ReLU (SequenceReLU is one); anything else would silently drop out of the total
PRICED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
FREE = (nn.Identity, nn.ReLU)
ENERGY_PARTS = ("ops", "addressing", "inout", "params", "potential")


class LemaireLIF(LIFNode):
    """A ``MultiStepLIF`` presented to the profiler as the multi-step ``LIFNode`` it recognises.

    The forward is the wrapped layer's; the ``LIFNode`` parameters (set to the same dynamics, as in
    models/neurons.py) only describe it, they never run.
    """

    def __init__(self, lif: MultiStepLIF) -> None:
        super().__init__(tau=1.0 / (1.0 - lif.decay), decay_input=False, v_threshold=lif.v_threshold,
                         v_reset=0.0, step_mode="m")
        self.lif = lif

    def forward(self, x_seq: torch.Tensor, b: torch.Tensor | float | None = None) -> torch.Tensor:
        return self.lif(x_seq, b)


class StepwiseConv(nn.Module):
    """A ``ConvBN``'s conv called once per time step on its (T * B, ...) input: same output, per-step calls."""

    def __init__(self, conv: nn.Module, steps: int) -> None:
        super().__init__()
        self.conv = conv
        self.steps = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] % self.steps:
            raise ValueError(f"a batch of {x.shape[0]} is not {self.steps} time steps folded into the batch")
        return torch.cat([self.conv(step) for step in x.chunk(self.steps)])


def lemaire_network(model: nn.Module, time_steps: int) -> nn.Module:
    """A BN-folded copy of ``model`` as the profiler must see it (``time_steps``: T of the forward)."""
    net = fold_batchnorm(model)
    for module in list(net.modules()):
        if isinstance(module, ConvBN):
            module.conv = StepwiseConv(module.conv, time_steps)
    for name, module in list(net.named_modules()):
        if isinstance(module, MultiStepLIF):
            parent, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent), child, LemaireLIF(module))
    wrapped = {id(m) for lif in net.modules() if isinstance(lif, LemaireLIF) for m in lif.modules()}
    unpriced = {type(m).__name__ for m in net.modules()
                if id(m) not in wrapped and not any(m.children()) and not isinstance(m, PRICED + FREE)}
    if unpriced:
        raise ValueError(f"the memory model has no rule for {', '.join(sorted(unpriced))}: it would leave them out")
    return net.eval()


def lemaire_config(energy: EnergyConfig) -> LemaireEnergyConfig:
    """The profiler's settings from the config section ``energy`` (a user error if the library rejects them).

    Not strict: the library would refuse the ``FREE`` modules, which :func:`lemaire_network` vetted.
    """
    per_byte = (energy.mem_sram_8kib_pj_per_byte, energy.mem_sram_32kib_pj_per_byte, energy.mem_sram_1mib_pj_per_byte)
    try:
        cost = LemaireEnergyCostConfig(
            e_add_pj=energy.mem_e_add_pj, e_mul_pj=energy.mem_e_mul_pj,
            memory_breakpoints=((0.0, 0.0), *((float(size), pj) for size, pj in zip(SRAM_SIZES_BYTES, per_byte))))
        return LemaireEnergyConfig(strict=False, cost_config=cost, snn_fifo_capacity_elements=energy.mem_fifo_elements)
    except ValueError as err:
        raise UserError(f"config section energy, memory model: {err}") from None


def constants(energy: EnergyConfig) -> dict[str, Any]:
    """The memory model's constants as energy.json records them."""
    return {"e_add_pj": energy.mem_e_add_pj, "e_mul_pj": energy.mem_e_mul_pj, "word_bits": WORD_BITS,
            "sram_pj_per_byte": dict(zip(("8KiB", "32KiB", "1MiB"), (
                energy.mem_sram_8kib_pj_per_byte, energy.mem_sram_32kib_pj_per_byte, energy.mem_sram_1mib_pj_per_byte))),
            "fifo_elements": energy.mem_fifo_elements}


@torch.no_grad()
def lemaire_energy(model: nn.Module, inputs: Iterable[tuple[torch.Tensor, ...]], time_steps: int,
                   energy: EnergyConfig, counts: OpCounts) -> dict[str, Any]:
    """Energy per inference (mean over ``inputs``, one ``model(*args)`` each) under the memory model.

    ``counts``: the op counter's counts of the same inputs, whose ``(other)`` row (MACs outside any
    conv or linear module) the profiler cannot see. Returns mJ by part (ops, addressing, and SRAM
    traffic: inout, params, potential; module_less), their sum ``energy_mj``, ``memory_mj``, the
    library's counts per inference and its largest buffer of each kind.
    """
    config = lemaire_config(energy)
    net = lemaire_network(model, time_steps)
    profiler = LemaireEnergyProfiler(config=config)
    profiler.bind_model(net)
    num_inferences = 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Lemaire formulas do not support", category=RuntimeWarning)
        with profiler:
            for args in inputs:
                net(*args)
                num_inferences += 1
    report = profiler.get_report()
    per = max(num_inferences, 1)
    parts = {f"{name}_mj": report.breakdown_pj[f"{name}_pj"] / per * PJ_TO_MJ for name in ENERGY_PARTS}
    other = [layer for layer in counts.layers if layer.name == OTHER_LAYER]
    cost = config.cost_config
    module_less_pj = sum(layer.macs * (cost.e_mul_pj + cost.e_add_pj) + layer.synops * cost.e_add_pj for layer in other)
    parts["module_less_mj"] = module_less_pj / max(counts.num_inferences, 1) * PJ_TO_MJ
    return {"energy_mj": sum(parts.values()), **parts,
            "memory_mj": parts["inout_mj"] + parts["params_mj"] + parts["potential_mj"],
            "counts": {name: value / per for name, value in report.counts.items()},
            "buffer_bytes": report.buffer_sizes_bytes}


def ratio(ann_mj: float, snn_mj: float) -> float | None:
    """ANN/SNN energy (None when the SNN costs nothing)."""
    return ann_mj / snn_mj if snn_mj else None


def format_models_table(sop_mj: dict[str, float], memory: dict[str, dict[str, Any]], energy: EnergyConfig) -> str:
    """Totals per inference of the networks measured ("snn", maybe "ann") under both models, ANN/SNN."""
    names = list(memory)
    labels = {"snn": "SNN", "ann": "ANN twin"}
    lines = [f"{'energy per inference (mJ)':<54}" + "".join(f"{labels[n]:>12}" for n in names)
             + (f"{'ANN/SNN':>10}" if len(names) == 2 else "")]

    def line(label: str, values: list[float], show_ratio: bool) -> str:
        text = f"{label:<54}" + "".join(f"{v:>12.4f}" for v in values)
        if show_ratio and len(values) == 2:
            r = ratio(values[1], values[0])
            text += f"{'n/a' if r is None else f'{r:.2f}x':>10}"
        return text

    lines.append(line(f"SOP model: SOPs x {energy.e_ac_pj:g} + MACs x {energy.e_mac_pj:g} pJ",
                      [sop_mj[n] for n in names], True))
    lines.append(line("memory model (Lemaire 2022): ops + addressing + SRAM", [memory[n]["energy_mj"] for n in names], True))
    for key, label in (("ops_mj", f"  ops (add {energy.mem_e_add_pj:g}, multiply {energy.mem_e_mul_pj:g} pJ)"),
                       ("addressing_mj", "  address computations"),
                       ("inout_mj", "  SRAM: input and output spikes / activations"),
                       ("params_mj", "  SRAM: weights and biases"),
                       ("potential_mj", "  SRAM: membrane potentials"),
                       ("module_less_mj", "  MACs outside conv/linear modules (soft-argmin)")):
        lines.append(line(label, [memory[n][key] for n in names], False))
    return "\n".join(lines)
