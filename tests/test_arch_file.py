"""Architecture files: version 2 (current edges, a cost-volume choice), the upgrade of version 1, errors."""

from __future__ import annotations

import json

import pytest
import torch

from common.errors import UserError
from common.paths import SHIPPED_ARCHITECTURE
from models.arch import ARCH_VERSION, architecture_from_dict, load_architecture
from models.cost_volume import correlation_cost_volume
from models.stereo_net import SpikingStereoNet


def shipped_payload() -> dict:
    return json.loads(SHIPPED_ARCHITECTURE.read_text())


def test_shipped_file_is_the_current_version_with_a_spiking_correlation_volume():
    arch = load_architecture(SHIPPED_ARCHITECTURE)
    assert shipped_payload()["version"] == ARCH_VERSION == 2
    assert arch.cost_volume == "correlation" and arch.membrane_shortcuts is True
    assert arch.readout == "spikes"  # a file without the key: the cost head reads spikes
    assert arch.disparity_subbins == 1  # nor this one: one cost per volume step, interpolated
    assert architecture_from_dict(arch.to_dict()) == arch  # round trip


def test_version_1_is_upgraded_keeping_cells_and_dropping_edge_lif_b():
    old = {**shipped_payload(), "version": 1, "lif_b": {
        "feature.stem.0.neuron": 2.6, "feature.cells.0_0_1.edges.1.snn_b3.neuron": 3.4}}
    del old["cost_volume"]
    arch = architecture_from_dict(old)
    assert arch.lif_b == {"feature.stem.0.neuron": 2.6}
    assert arch.cost_volume == "concat" and arch.membrane_shortcuts is False  # what version 1 networks were
    assert arch.feature.genotype == old["feature"]["genotype"]
    SpikingStereoNet(arch)  # every kept name exists in the new network


def test_unknown_version_and_cost_volume_are_user_errors(tmp_path):
    for change, message in (({"version": 7}, "unsupported architecture version 7"),
                            ({"cost_volume": "sad"}, "cost_volume must be one of concat, correlation"),
                            ({"membrane_shortcuts": "yes"}, "membrane_shortcuts must be true or false"),
                            ({"readout": "membrane"}, "readout must be one of spikes, current"),
                            ({"disparity_subbins": 2}, "disparity_subbins must be one of 1, 3"),
                            ({"disparity_subbins": True}, "disparity_subbins must be one of 1, 3")):
        path = tmp_path / "arch.json"
        path.write_text(json.dumps({**shipped_payload(), **change}))
        with pytest.raises(UserError, match=message):
            load_architecture(path)


def test_correlation_volume_of_spikes_is_their_and_at_each_shift():
    torch.manual_seed(0)
    right = (torch.rand(1, 3, 4, 9) < 0.5).float()
    left = torch.zeros_like(right)
    left[..., 2:] = right[..., :-2]  # true disparity 2
    volume = correlation_cost_volume(left, right, num_disp=4)
    assert volume.shape == (1, 3, 4, 4, 9)
    assert set(volume.unique().tolist()) <= {0.0, 1.0}  # still spikes
    for d in range(4):
        expected = torch.zeros(1, 3, 4, 9)
        expected[..., d:] = torch.logical_and(left[..., d:] > 0, right[..., : 9 - d] > 0).float()
        assert torch.equal(volume[:, :, d], expected)
    # at the true shift the AND keeps every left spike that has a partner
    assert torch.equal(volume[:, :, 2, :, 2:], left[..., 2:])


@pytest.mark.parametrize("readout", ["spikes", "current"])
def test_the_cost_head_reads_spike_rates_or_the_fuse_current_and_the_fuse_reads_spikes(readout):
    """Spikes: T x the cost head's input is a whole spike count. Current: it is not, while the fuse conv
    itself still reads binary spikes (what makes it synaptic operations in the energy report)."""
    torch.manual_seed(0)
    arch = architecture_from_dict({**shipped_payload(), "readout": readout, "num_bins": 3})
    for spec in (arch.feature, arch.matching):
        spec.filter_multiplier = 2
    net = SpikingStereoNet(arch)  # training mode: BN normalises with batch statistics, so layers fire
    seen = {}
    fuse = next(iter(net.matching.fuse.values()))
    fuse.conv.register_forward_pre_hook(lambda m, args: seen.update(fuse_in=args[0]))
    net.cost_head.register_forward_pre_hook(lambda m, args: seen.update(head_in=args[0]))
    events = (torch.rand(1, 3, 2, 24, 48) < 0.3).float()
    with torch.no_grad():
        net(events, events.roll(-2, dims=-1))
    assert set(seen["fuse_in"].unique().tolist()) <= {0.0, 1.0}
    counts = seen["head_in"] * 3
    whole = torch.allclose(counts, counts.round(), atol=1e-5)
    assert whole == (readout == "spikes")
    assert float(seen["head_in"].std()) > 0
