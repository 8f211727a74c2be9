"""The memory-traffic energy model (eval/memory_energy.py, Lemaire et al. 2022) against hand counts."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from spikingjelly.activation_based.op_counter import LemaireEnergyConfig, LemaireEnergyCostConfig
from test_energy import OneLayer, _hand_pattern, _stereo_pair
from torch import nn

from common.errors import UserError
from eval.memory_energy import LemaireLIF, lemaire_config, lemaire_energy, lemaire_network
from eval.opcount import OTHER_LAYER, count_operations
from models.neurons import lif_modules
from stereo.config import EnergyConfig


def _per_byte(cfg: EnergyConfig, size: int) -> float:
    """pJ per byte of a buffer of ``size`` bytes (at most 8 KiB): linear from 0 pJ at 0 B."""
    assert size <= 8 * 1024
    return cfg.mem_sram_8kib_pj_per_byte * size / (8 * 1024)


@pytest.mark.parametrize("cfg", [EnergyConfig(), EnergyConfig(mem_e_add_pj=0.5, mem_e_mul_pj=2.0,
                                                              mem_sram_8kib_pj_per_byte=4.0, mem_fifo_elements=100)])
def test_one_layer_memory_model_equals_hand_count(cfg):
    # ConvBNLIF 1 -> 2 channels, 3x3, stride 2, padding 1, on 5x5 inputs over T = 2 steps; all weights 1 and
    # BN at rest, so a neuron's membrane is the number of input spikes in its receptive field (threshold 0.5).
    net = OneLayer().eval()
    nn.init.ones_(net.block.conv.weight)
    x = _hand_pattern()  # step 0: 5 spikes, step 1: 1 spike
    report = lemaire_energy(net, [(x,)], 2, cfg, count_operations(net, [(x,)]))
    counts = report["counts"]
    # Output spikes: step 0 covers output positions (0,0) (0,1) (1,0) (1,1) (1,2) (2,1) (2,2), step 1 (0,2):
    # 8 positions x 2 channels = 16 spikes.
    spikes_in, spikes_out, c_out, kernel, outputs_per_step = 6, 16, 2, 9, 2 * 3 * 3
    # Synapses (the library's fan-out, borders ignored): per input spike C_out x ceil(3/2)^2 = 8 synaptic
    # operations, and C_out x 3 x 3 = 18 weight reads, membrane reads and writes, accumulator addresses.
    fanout = spikes_in * c_out * kernel
    assert counts["synop"] == spikes_in * c_out * 4 == 48
    assert counts["read_params_bytes"] == 4 * (fanout + 2 * outputs_per_step)  # 32-bit weights + folded-BN biases
    assert counts["read_potential_bytes"] == counts["write_potential_bytes"] == 4 * (fanout + 2 * outputs_per_step)
    # ^ synaptic updates, then the LIF's read and write of its 18 membranes at each of the 2 steps
    assert counts["read_in_bytes"] == 4 * spikes_in and counts["write_out_bytes"] == 4 * spikes_out
    assert counts["ac"] == 48 + 2 * outputs_per_step + spikes_out  # synapses, bias adds, spikes
    assert counts["mac"] == 2 * outputs_per_step  # the leak, per neuron and step
    assert counts["acc_addr"] == fanout and counts["mac_addr"] == 2 * spikes_in
    assert report["buffer_bytes"] == {"inout_buffer_bytes": 4 * cfg.mem_fifo_elements,
                                      "params_buffer_bytes": 4 * (18 + 2),  # weights and biases
                                      "potential_buffer_bytes": 4 * outputs_per_step}  # one step's membranes
    add, mac = cfg.mem_e_add_pj, cfg.mem_e_mul_pj + cfg.mem_e_add_pj
    fifo, params, membranes = (_per_byte(cfg, size) for size in (4 * cfg.mem_fifo_elements, 80, 72))
    expected_pj = {
        "ops": 100 * add + 36 * mac,
        "addressing": 108 * add + 12 * mac,
        "inout": (24 + 64) * fifo,
        "params": 576 * params,
        "potential": 2 * 576 * membranes,
    }
    for part, pj in expected_pj.items():
        assert report[f"{part}_mj"] == pytest.approx(pj * 1e-9), part
    assert report["module_less_mj"] == 0
    assert report["memory_mj"] == pytest.approx((expected_pj["inout"] + expected_pj["params"] + expected_pj["potential"]) * 1e-9)
    assert report["energy_mj"] == pytest.approx(sum(expected_pj.values()) * 1e-9)
    if cfg == EnergyConfig():
        assert report["energy_mj"] == pytest.approx(321.196875e-9)


def test_memory_constants_default_to_spikingjelly_lemaire_defaults():
    library, cfg = LemaireEnergyCostConfig(), EnergyConfig()
    assert (cfg.mem_e_add_pj, cfg.mem_e_mul_pj) == (library.e_add_pj, library.e_mul_pj)
    assert lemaire_config(cfg).cost_config.memory_breakpoints == library.memory_breakpoints
    assert cfg.mem_fifo_elements == LemaireEnergyConfig().snn_fifo_capacity_elements
    with pytest.raises(UserError, match="memory model"):
        lemaire_config(dataclasses.replace(cfg, mem_e_mul_pj=math.inf))


@pytest.mark.parametrize("ann", [False, True])
def test_stereo_net_every_layer_counted_once_and_totals_finite(ann):
    from stereo_toys import toy_architecture

    from models.stereo_net import SpikingStereoNet

    torch.manual_seed(0)
    net = SpikingStereoNet(toy_architecture(), in_channels=2, ann=ann).eval()
    for m in net.modules():  # weights that make every layer fire, as in tests/test_energy.py
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm3d):
            m.weight.data.fill_(1.0)
            m.bias.data.fill_(0.6)
    left, right = _stereo_pair()
    steps = 1 if ann else left.shape[1]
    adapted = lemaire_network(net, steps)
    # every LIF wrapped once, the outputs unchanged
    assert sum(isinstance(m, LemaireLIF) for m in adapted.modules()) == len(lif_modules(net))
    assert set(lif_modules(adapted)) == {f"{name}.lif" for name in lif_modules(net)}
    with torch.no_grad():
        torch.testing.assert_close(adapted(left, right), net(left, right), rtol=1e-4, atol=1e-4)
    leak = []  # neurons x steps: each LIF's leak multiply
    handles = [m.register_forward_hook(lambda mod, args, out: leak.append(out.numel())) for m in lif_modules(net).values()]
    counts = count_operations(net, [(left, right)], dense_macs=ann)
    for h in handles:
        h.remove()
    report = lemaire_energy(net, [(left, right)], steps, EnergyConfig(), counts)
    dense_macs = sum(layer.macs for layer in counts.layers if layer.name != OTHER_LAYER)
    # every conv counted once: the library's MACs are the op counter's dense conv MACs plus the leak
    assert report["counts"]["mac"] == dense_macs + sum(leak)
    [other] = [layer for layer in counts.layers if layer.name == OTHER_LAYER]
    assert other.macs > 0 and report["module_less_mj"] == pytest.approx(other.macs * 3.2e-9)  # the soft-argmin
    assert math.isfinite(report["energy_mj"]) and report["energy_mj"] > 0
    if ann:
        assert report["counts"]["synop"] == 0 and report["potential_mj"] == 0 and not leak
        assert report["counts"]["write_out_bytes"] > 0  # ANN layers write their outputs
    else:
        assert report["counts"]["synop"] > 0 and report["potential_mj"] > 0
        assert counts.total_synops > 0


def test_module_without_a_rule_is_refused():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2))
    with pytest.raises(ValueError, match="AvgPool2d"):
        lemaire_network(net, 1)
