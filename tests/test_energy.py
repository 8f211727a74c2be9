"""Operation counts and energy against hand counts (SPEC §9)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from eval.energy_report import energy_rows
from eval.opcount import OTHER_LAYER, count_operations, fold_batchnorm, weight_layers
from models.neurons import ConvBNLIF


class OneLayer(nn.Module):
    """A single spiking conv (3x3, stride 2, padding 1) fed by (T, B, C, H, W) spikes."""

    def __init__(self) -> None:
        super().__init__()
        self.block = ConvBNLIF(1, 2, 3, stride=2, padding=1)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.block(x_seq)


class SpikeThenDense(nn.Module):
    """Spiking conv, then the average over T (non-binary) into a conv and a linear head."""

    def __init__(self, ann: bool = False) -> None:
        super().__init__()
        self.block = ConvBNLIF(2, 4, 3, ann=ann)
        self.dense = nn.Sequential(nn.Conv2d(4, 3, 3, padding=1), nn.BatchNorm2d(3))
        self.head = nn.Linear(3, 5)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        y = self.dense(self.block(x_seq).mean(0))  # (B, 3, H, W)
        return self.head(y.mean((2, 3)))


def _hand_pattern() -> torch.Tensor:
    x = torch.zeros(2, 1, 1, 5, 5)
    for r, c in [(0, 0), (1, 1), (2, 4), (3, 3), (4, 2)]:
        x[0, 0, 0, r, c] = 1
    x[1, 0, 0, 0, 4] = 1
    return x


def test_one_layer_synops_equal_hand_count():
    # 5x5 input, k3 s2 p1 -> 3x3 output; output i covers input rows 2i-1..2i+1, so rows/cols
    # 0, 2, 4 lie in 1 receptive field and 1, 3 in 2 (borders and stride).
    # step 0: (0,0) 1x1, (1,1) 2x2, (2,4) 1x1, (3,3) 2x2, (4,2) 1x1 -> 11; step 1: (0,4) -> 1.
    # times C_out = 2 -> 24 synaptic operations.
    net = OneLayer()
    counts = count_operations(net, [(_hand_pattern(),)])
    [layer] = counts.layers
    assert layer.name == "block.conv"
    assert layer.synops == 24 and layer.macs == 0 and layer.kind == "SOP"
    assert layer.input_rate == pytest.approx(6 / 50)
    rows = energy_rows(counts, e_ac_pj=0.9, e_mac_pj=4.6)
    assert rows[0]["energy_mj"] == pytest.approx(24 * 0.9e-9)


def test_each_conv_and_linear_counted_once_by_one_counter():
    torch.manual_seed(0)
    net = SpikeThenDense()
    x = (torch.rand(3, 1, 2, 6, 7) < 0.3).float()
    counts = count_operations(net, [(x,), (x,)])
    by_name = {layer.name: layer for layer in counts.layers}
    assert OTHER_LAYER not in by_name
    assert set(by_name) == set(weight_layers(fold_batchnorm(net)))
    assert by_name["block.conv"].kind == "SOP" and by_name["block.conv"].macs == 0
    assert by_name["block.conv"].synops > 0
    # the dense conv: 2 calls x (6*7 positions x 3 out x 4*9 in); the head: 2 x 5 x 3
    assert by_name["dense.0"].kind == "MAC" and by_name["dense.0"].synops == 0
    assert by_name["dense.0"].macs == 2 * 6 * 7 * 3 * 4 * 9
    assert by_name["head"].macs == 2 * 5 * 3 and by_name["head"].kind == "MAC"
    assert counts.num_inferences == 2


def test_ann_twin_macs_equal_flop_counter_conv_flops_over_two():
    torch.manual_seed(0)
    net = SpikeThenDense(ann=True).eval()
    x = torch.randint(0, 2, (1, 1, 2, 6, 7)).float()  # a binary twin input must still count as MACs
    counts = count_operations(net, [(x,)], dense_macs=True)
    with FlopCounterMode(display=False) as flops:
        net(x)
    conv_flops = flops.get_flop_counts()["Global"][torch.ops.aten.convolution]
    conv_macs = sum(layer.macs for layer in counts.layers if layer.name != "head")
    assert conv_macs == conv_flops // 2
    assert counts.total_synops == 0


def test_folding_keeps_outputs_and_removes_batchnorm():
    torch.manual_seed(0)
    net = SpikeThenDense(ann=True)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 2)
    net.eval()
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())  # the original is untouched
    x = torch.rand(2, 1, 2, 6, 7)
    torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-5)


def _stereo_pair(height: int = 24, width: int = 48, steps: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return tuple((torch.rand(1, steps, 2, height, width, generator=gen) < 0.3).float() for _ in range(2))


def _dense_macs(module: nn.Module, x: torch.Tensor) -> int:
    out = module(x)
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    return out.numel() * module.weight[0].numel()


@pytest.mark.parametrize("ann", [False, True])
@pytest.mark.parametrize("shortcuts", [False, True])
def test_stereo_net_layers_counted_once_by_exactly_one_counter(ann, shortcuts):
    from stereo_toys import toy_architecture

    from models.stereo_net import SpikingStereoNet

    torch.manual_seed(0)
    arch = toy_architecture()
    arch.membrane_shortcuts = shortcuts  # the shortcuts add currents into membranes: no conv sees them
    net = SpikingStereoNet(arch, in_channels=2, ann=ann).eval()
    for m in net.modules():  # weights that make every layer fire, so no count is trivially zero
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm3d):
            m.weight.data.fill_(1.0)
            m.bias.data.fill_(0.6)
    left, right = _stereo_pair()
    counts = count_operations(net, [(left, right)], dense_macs=ann)
    folded = fold_batchnorm(net)
    layers = weight_layers(folded)
    inputs: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_pre_hook(lambda mod, args, name=name: inputs.setdefault(name, args[0]))
               for name, m in layers.items()]
    with torch.no_grad():
        folded(left, right)
    for h in handles:
        h.remove()
    by_name = {layer.name: layer for layer in counts.layers}
    assert set(by_name) - {OTHER_LAYER} == set(layers)
    for name, module in layers.items():
        layer = by_name[name]
        assert layer.calls == 1, name
        with torch.no_grad():
            dense = _dense_macs(module, inputs[name])
        binary = bool(((inputs[name] == 0) | (inputs[name] == 1)).all())
        if ann:
            assert (layer.synops, layer.macs) == (0, dense), name
        elif binary:
            assert layer.macs == 0 and 0 < layer.synops <= dense, name
        else:
            assert layer.synops == 0 and layer.macs == dense, name
    if not ann and not shortcuts:  # (with shortcuts this toy's saturated fuse spikes the same at both steps)
        kinds = {layer.kind for layer in counts.layers if layer.name != OTHER_LAYER}
        assert kinds == {"SOP", "MAC"}  # spike-fed layers and the T-averaged cost head both occur
        assert by_name["cost_head"].kind == "MAC"


def test_stereo_net_ann_twin_macs_equal_flop_counter():
    from stereo_toys import toy_architecture

    from models.stereo_net import SpikingStereoNet

    torch.manual_seed(0)
    net = SpikingStereoNet(toy_architecture(), in_channels=2, ann=True).eval()
    left, right = _stereo_pair()
    counts = count_operations(net, [(left, right)], dense_macs=True)
    with FlopCounterMode(display=False) as flops, torch.no_grad():
        net(left, right)
    conv_flops = flops.get_flop_counts()["Global"][torch.ops.aten.convolution]
    conv_macs = sum(layer.macs for layer in counts.layers if layer.name != OTHER_LAYER)
    assert conv_macs == conv_flops // 2
