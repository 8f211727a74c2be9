"""The supernet: discrete mode equals the retrained network; decode writes a loadable architecture."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.arch import Architecture, NetSpec, architecture_from_dict, load_architecture
from models.neurons import lif_modules
from models.stereo_net import SpikingStereoNet
from models.supernet import SearchStereoNet
from models.topology import MOVES, NUM_LEVELS

ARCH = Architecture(
    feature=NetSpec([1, 0], [[1, 1], [0, 1], [3, 2], [2, 1], [7, 1], [8, 0]], filter_multiplier=2),
    matching=NetSpec([1, 2, 2], [[0, 1], [1, 0], [4, 2], [3, 2], [8, 1], [6, 1]], filter_multiplier=2),
    num_bins=3, max_disparity_px=24,
)


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Random conv weights and BN affine/statistics so that eval-mode LIFs fire at varied rates."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point() or name.endswith(".b"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            elif name.endswith(("running_mean", "bn.bias")):
                tensor.copy_(0.3 * torch.randn(tensor.shape, generator=gen))
            elif name.endswith("bn.weight"):
                tensor.copy_(1.0 + 0.5 * torch.rand(tensor.shape, generator=gen))
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) / max(1, tensor[0].numel()) ** 0.5 * 1.5)


def _events(seed: int, shape=(1, 3, 2, 24, 48)) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


@pytest.mark.parametrize(("readout", "subbins"), [("spikes", 1), ("current", 1), ("spikes", 3)])
def test_discrete_supernet_computes_exactly_what_the_retrained_network_computes(readout, subbins):
    torch.manual_seed(0)
    supernet = SearchStereoNet.from_architecture(
        dataclasses.replace(ARCH, readout=readout, disparity_subbins=subbins), in_channels=2)
    _randomise(supernet, 1)
    lifs = lif_modules(supernet)
    lifs["feature.stem.0.neuron"].b.fill_(2.2)  # a DGS-moved b travels with the architecture
    arch = supernet.decode()  # in discrete mode: ARCH itself, with the current b of its LIF layers
    assert (arch.feature, arch.matching, arch.readout) == (ARCH.feature, ARCH.matching, readout)
    assert arch.disparity_subbins == subbins
    assert arch.lif_b["feature.stem.0.neuron"] == 2.2
    retrained = SpikingStereoNet(arch, in_channels=2)
    super_state = supernet.state_dict()
    target_state = retrained.state_dict()
    assert set(target_state) < set(super_state)
    retrained.load_state_dict({key: super_state[key] for key in target_state})
    assert float(lif_modules(retrained)["feature.stem.0.neuron"].b) == float(torch.tensor(2.2))
    supernet.eval()
    retrained.eval()
    left, right = _events(2), _events(3)
    with torch.no_grad():
        expected = retrained(left, right)
        got = supernet(left, right)
        supernet.set_discrete(None)
        mixed = supernet(left, right)
    assert expected.shape == (1, 24, 48)
    assert float(expected.std()) > 0.1  # a non-degenerate disparity map
    assert torch.equal(got, expected)
    assert not torch.allclose(mixed, expected, atol=1e-3)  # the weighted supernet is another function


def test_parameter_split_and_decode_follow_alpha_and_beta():
    torch.manual_seed(0)
    net = SearchStereoNet(in_channels=2, num_bins=3, max_disparity_px=24, feature_layers=2, matching_layers=3,
                          filter_multiplier=2)
    arch_ids = {id(p) for p in net.arch_parameters()}
    weight_ids = {id(p) for p in net.weight_parameters()}
    assert not arch_ids & weight_ids
    assert arch_ids | weight_ids == {id(p) for p in net.parameters()}
    assert net.feature.alpha.shape == (9, 3) and net.matching.beta.shape == (3, NUM_LEVELS, len(MOVES))
    down, same = MOVES.index("down"), MOVES.index("same")
    with torch.no_grad():
        net.feature.alpha.zero_()
        net.feature.alpha[:, 0] = 1.0  # skip everywhere
        net.matching.alpha.zero_()
        net.matching.alpha[:, 2] = 1.0  # snn_b5 everywhere
        net.matching.alpha[[1, 4, 8], 2] = 3.0
        net.feature.beta.zero_()
        net.feature.beta[:, :, same] = 2.0
        net.matching.beta.zero_()
        net.matching.beta[:, :, down] = 2.0
    arch = net.decode(filter_multiplier=8, source="test")
    assert arch.feature.path == [0, 0] and arch.matching.path == [1, 2, 3]
    assert [op for _, op in arch.feature.genotype] == [0] * 6
    assert [edge for edge, _ in arch.matching.genotype] == [1, 0, 4, 2, 8, 5]
    assert arch.feature.filter_multiplier == 8
    assert "feature.stem.0.neuron" in arch.lif_b
    assert all(name in lif_modules(net) for name in arch.lif_b)
    # the written file validates, and its retrained network builds (its LIF names all exist)
    again = architecture_from_dict(arch.to_dict())
    SpikingStereoNet(again, in_channels=2)


def test_decoded_architecture_round_trips_through_the_file(tmp_path):
    net = SearchStereoNet(in_channels=2, num_bins=3, max_disparity_px=24, feature_layers=1, matching_layers=2,
                          filter_multiplier=2)
    arch = net.decode(filter_multiplier=4)
    arch.save(tmp_path / "architecture.json")
    loaded = load_architecture(tmp_path / "architecture.json")
    assert loaded == arch
