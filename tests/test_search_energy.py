"""The search's energy term: synaptic operations counted exactly, equal to the energy report's count on
the retrained network, and differentiable in alpha and beta in the direction of fewer operations."""

from __future__ import annotations

import itertools

import pytest
import torch
from test_search_supernet import ARCH, _events, _randomise
from torch import nn

from eval.opcount import count_operations
from models.stereo_net import SpikingStereoNet
from models.supernet import SearchStereoNet
from models.synops import conv_synops
from models.topology import OPS


def _by_hand(spikes: torch.Tensor, conv: nn.Conv2d) -> int:
    """Every spike x output channels x the output positions whose 3x3 window (zero padding) holds it."""
    total = 0
    height, width = spikes.shape[-2:]
    for t, b, c, y, x in itertools.product(*(range(n) for n in spikes.shape)):
        if spikes[t, b, c, y, x]:
            receivers = sum(1 for oy in (y - 1, y, y + 1) for ox in (x - 1, x, x + 1)
                            if 0 <= oy < height and 0 <= ox < width)
            total += receivers * conv.out_channels
    return total


def test_conv_synops_counts_each_spike_times_its_receivers():
    spikes = (torch.rand(2, 1, 2, 5, 6, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    conv = nn.Conv2d(2, 3, 3, padding=1)
    assert int(conv_synops(spikes, conv)) == _by_hand(spikes, conv)
    corner = torch.zeros(1, 1, 1, 4, 4)
    corner[0, 0, 0, 0, 0] = 1.0  # a corner spike reaches 4 of the 9 positions
    assert int(conv_synops(corner, nn.Conv2d(1, 5, 3, padding=1))) == 4 * 5
    volume = torch.ones(1, 1, 1, 3, 3, 3)
    assert int(conv_synops(volume, nn.Conv3d(1, 2, 1))) == 27 * 2  # 1x1x1: one receiver per spike


def test_on_a_fixed_architecture_the_expected_count_is_the_energy_report_count():
    torch.manual_seed(0)
    supernet = SearchStereoNet.from_architecture(ARCH, in_channels=2)
    _randomise(supernet, 1)
    retrained = SpikingStereoNet(supernet.decode(), in_channels=2)
    retrained.load_state_dict({k: v for k, v in supernet.state_dict().items() if k in retrained.state_dict()})
    supernet.eval().record_synops()
    left, right = _events(2), _events(3)
    with torch.no_grad():
        supernet(left, right)
    counts = count_operations(retrained.eval(), [(left, right)])
    in_cells = sum(layer.synops for layer in counts.layers if ".cells." in layer.name)
    assert in_cells > 0
    assert float(supernet.expected_synops()) == pytest.approx(in_cells, rel=1e-9)


def test_the_expected_count_pulls_alpha_towards_skips_and_moves_beta():
    torch.manual_seed(0)
    supernet = SearchStereoNet(in_channels=2, num_bins=3, max_disparity_px=24, feature_layers=2,
                               matching_layers=2, filter_multiplier=2)
    supernet.train().record_synops()
    supernet(_events(4), _events(5))
    supernet.expected_synops().backward()
    skip = OPS.index("skip_connect")
    for net in (supernet.feature, supernet.matching):
        grad = net.alpha.grad
        assert (grad[:, skip] < 0).all()  # more weight on a skip: fewer operations
        assert (grad[:, [i for i in range(len(OPS)) if i != skip]] > 0).all()
        assert net.beta.grad.abs().sum() > 0


def test_the_search_loss_adds_the_weighted_energy_in_millijoules():
    from stereo.config import Config
    from stereo.searching import search_loss

    torch.manual_seed(0)
    cfg = Config()
    cfg.search.energy_penalty, cfg.energy.e_ac_pj = 50.0, 0.9
    supernet = SearchStereoNet(in_channels=2, num_bins=3, max_disparity_px=24, feature_layers=2,
                               matching_layers=2, filter_multiplier=2).eval()
    batch = {"left": _events(6, (2, 3, 2, 24, 48)), "right": _events(7, (2, 3, 2, 24, 48)),
             "disp_px": torch.full((2, 24, 48), 5.0), "valid": torch.ones(2, 24, 48, dtype=torch.bool)}
    with torch.no_grad():
        with_energy = float(search_loss(supernet, cfg, torch.device("cpu"))(supernet, batch))
        synops = float(supernet.expected_synops())
        cfg.search.energy_penalty = 0.0
        without = float(search_loss(supernet, cfg, torch.device("cpu"))(supernet, batch))
    assert not supernet.feature.record_synops  # switched off again with the penalty
    assert with_energy - without == pytest.approx(50.0 * 0.9e-9 * synops / 2, rel=1e-5)
