"""The stereo network: cost volume, disparity regression, any input size, view independence, decoded ops."""

from __future__ import annotations

import pytest
import torch
from stereo_toys import calibrate_batchnorm, toy_architecture, toy_pair
from torch import nn

from common.errors import UserError
from models.cost_volume import concat_cost_volume
from models.neurons import ConvBN, SequenceReLU, lif_multistep
from models.ops import resample_current, resample_levels
from models.regression import interleave_subbins, soft_argmin_disparity, upsample_cost
from models.stereo_net import SpikingStereoNet, current_lif_b


def test_cost_volume_slice_d_pairs_left_with_right_shifted_by_d():
    torch.manual_seed(0)
    right = torch.rand(2, 3, 4, 10)
    d_true = 3
    left = torch.zeros_like(right)
    left[..., d_true:] = right[..., :-d_true]  # left[x] = right[x - d]
    volume = concat_cost_volume(left, right, num_disp=5)
    assert volume.shape == (2, 6, 5, 4, 10)
    for d in range(5):
        lhs, rhs = volume[:, :3, d], volume[:, 3:, d]
        assert torch.equal(lhs[..., d:], left[..., d:]) and torch.equal(rhs[..., d:], right[..., : 10 - d])
        assert not lhs[..., :d].any() and not rhs[..., :d].any()  # no partner: zero in both halves
    match = volume[:, :3, d_true, :, d_true:]
    assert torch.equal(match, volume[:, 3:, d_true, :, d_true:])  # slice d_true matches wherever valid
    assert not torch.equal(volume[:, :3, 1, :, 3:], volume[:, 3:, 1, :, 3:])


def test_soft_argmin_recovers_a_peaked_cost():
    disp_true = torch.tensor([[7.0, 30.0], [0.0, 47.0]])
    d = torch.arange(48.0).view(1, 48, 1, 1)
    cost = 50.0 * (d - disp_true).abs()  # softmin puts ~all mass on the true disparity
    assert torch.allclose(soft_argmin_disparity(cost)[0], disp_true, atol=1e-4)
    # Two equal minima at 10 and 11 give their mean: sub-pixel output
    two = torch.full((1, 48, 1, 1), 100.0)
    two[0, 10] = two[0, 11] = 0.0
    assert soft_argmin_disparity(two).item() == pytest.approx(10.5, abs=1e-4)


def test_upsample_cost_gives_full_resolution_disparity_axis():
    cost = torch.arange(16.0).view(1, 1, 16, 1, 1).expand(1, 1, 16, 2, 3)
    up = upsample_cost(cost, 48, 6, 9)
    assert up.shape == (1, 48, 6, 9)
    # with align_corners=False, full-resolution index 3d + 1 samples level-0 slice d exactly
    assert torch.allclose(up[0, 3 * 5 + 1], torch.full((6, 9), 5.0))


def test_subbin_costs_are_laid_out_step_by_step_at_1_px():
    steps = torch.arange(4.0).view(1, 1, 4, 1, 1)
    cost = torch.cat([10 * steps + s for s in range(3)], dim=1)  # sub-bin s of step k costs 10k + s
    flat = interleave_subbins(cost)
    assert flat.shape == (1, 1, 12, 1, 1)
    assert flat.flatten().tolist() == [10 * k + s for k in range(4) for s in range(3)]


@pytest.mark.parametrize("ann", [False, True])
@pytest.mark.parametrize(("bias", "expected"), [((9.0, 9.0, -9.0), 3 * 3.5 + 2), ((-9.0, 9.0, 9.0), 3 * 3.5)])
def test_a_subbin_head_puts_each_subbin_at_its_own_disparity(ann, bias, expected):
    """A head that prefers one sub-bin everywhere: the soft-argmin is the mean of that sub-bin's
    disparities 3k + s over the 8 steps of a 24 px network (one cost per step would give 11.5)."""
    arch = toy_architecture()
    arch.disparity_subbins = 3
    net = SpikingStereoNet(arch, ann=ann).eval()
    with torch.no_grad():
        net.cost_head.weight.zero_()
        net.cost_head.bias.copy_(torch.tensor(bias))
        pair = toy_pair(24, 48)
        disparity = net(pair["left"][None], pair["right"][None])
    assert net.cost_head.out_channels == 3
    assert torch.allclose(disparity, torch.full_like(disparity, expected), atol=1e-3)


@pytest.mark.parametrize("ann", [False, True])
def test_odd_input_sizes_come_back_at_input_size(ann):
    torch.manual_seed(0)
    net = SpikingStereoNet(toy_architecture(), in_channels=2, ann=ann).eval()
    for height, width in ((260, 346), (50, 77)):
        pair = toy_pair(height, width)
        with torch.no_grad():
            disp = net(pair["left"][None], pair["right"][None])
        assert disp.shape == (1, height, width)
        assert torch.isfinite(disp).all() and disp.min() >= 0 and disp.max() <= 23


def test_a_view_gives_the_same_output_alone_or_beside_another_in_either_order():
    torch.manual_seed(0)
    a, b = toy_pair(48, 72, seed=1), toy_pair(48, 72, seed=2)
    net = calibrate_batchnorm(SpikingStereoNet(toy_architecture(), in_channels=2), a)
    with torch.no_grad():
        feats_alone = net.feature(a["left"][:, None])
        feats_first = net.feature(torch.stack([a["left"], b["left"]], dim=1))
        feats_second = net.feature(torch.stack([b["right"], a["left"]], dim=1))
        assert 0.02 < feats_alone.mean() < 0.98  # real spike patterns, not a silent network
        assert torch.equal(feats_first[:, :1], feats_alone) and torch.equal(feats_second[:, 1:], feats_alone)
        alone = net(a["left"][None], a["right"][None])
        batched = net(torch.stack([b["left"], a["left"]]), torch.stack([b["right"], a["right"]]))
        swapped = net(a["right"][None], a["left"][None])
    assert torch.allclose(batched[1:], alone, atol=1e-5)
    assert not torch.allclose(swapped, alone)  # the views are not interchangeable


def test_decoded_ops_keep_their_identity_carry_currents_and_lif_b_is_applied():
    arch = toy_architecture(lif_b={"feature.stem.0.neuron": 2.2, "feature.cells.0_0_1.nodes.1": 4.5})
    net = SpikingStereoNet(arch, in_channels=2)
    cell = net.feature.cells["0_0_1"]  # genotype rows: edge 0 skip, 1 b3, 2 b3, 3 b5, 7 b3, 8 skip
    assert isinstance(cell.edges["0"]["skip_connect"], nn.Identity)
    assert isinstance(cell.edges["8"]["skip_connect"], nn.Identity)
    b3, b5 = cell.edges["1"]["snn_b3"], cell.edges["3"]["snn_b5"]
    assert type(b3) is ConvBN and type(b5) is ConvBN  # currents: no LIF of their own
    assert (b3.b, b5.b) == (3.0, 5.0)
    assert b3.conv.weight.data_ptr() != b5.conv.weight.data_ptr()
    x = (torch.rand(2, 1, b3.conv.in_channels, 4, 4) < 0.5).float()
    assert torch.equal(cell.edges["0"]["skip_connect"](x), x)
    b3.eval()
    current = b3(x)
    assert not torch.equal(current, (current > 0).float())  # a real-valued current, not spikes
    b = current_lif_b(net)
    # node b = mean b of the node's conv ops; skips bring none: node 0 <- (b3, skip), node 2 <- (b3, skip)
    assert b["feature.stem.0.neuron"] == pytest.approx(2.2)
    assert b["feature.cells.0_0_1.nodes.0"] == 3.0 and b["feature.cells.0_0_1.nodes.2"] == 3.0
    assert b["feature.cells.0_0_1.nodes.1"] == pytest.approx(4.5)  # (b3 + b5) / 2 = 4, then lif_b's 4.5
    assert not any(".edges." in name for name in b)  # every LIF sits at a node, a stem, a pre or a fuse
    twin = SpikingStereoNet(arch, in_channels=2, ann=True)
    assert isinstance(twin.feature.cells["0_0_1"].nodes[1], SequenceReLU)
    assert current_lif_b(twin) == {}


@pytest.mark.parametrize("shortcuts", [False, True])
def test_a_node_integrates_the_sum_of_its_edge_currents(shortcuts):
    """Node 0 of a retrained cell, fed by edge 0 (skip from s0) and edge 1 (b3 conv from s1).

    Without shortcuts: LIF(pre0 spikes + BN(conv(pre1 spikes))). With membrane shortcuts each edge also
    hands its source's current: LIF(I_pre0 + BN(conv(pre1 spikes)) + I_pre1); convs still see spikes.
    """
    torch.manual_seed(0)
    arch = toy_architecture()
    arch.membrane_shortcuts = shortcuts
    net = SpikingStereoNet(arch, in_channels=2).eval()
    cell = net.feature.cells["0_0_1"]
    s0 = (torch.rand(2, 1, 6, 6, 6) < 0.3).float()
    s1 = (torch.rand(2, 1, 6, 6, 6) < 0.3).float()
    out, mean_current = cell({0: s0}, s1)
    i0 = cell.pre0["0"].membrane_input(resample_levels(s0, 0, 1))
    i1 = cell.pre1.membrane_input(resample_levels(s1, 0, 1))
    spikes0, spikes1 = cell.pre0["0"].neuron(i0), cell.pre1.neuron(i1)
    conv = cell.edges["1"]["snn_b3"](spikes1)
    node0 = i0 + conv + i1 if shortcuts else spikes0 + conv
    expected, _ = lif_multistep(node0, 3.0)
    torch.testing.assert_close(out[:, :, : expected.shape[2]], expected)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert mean_current.shape == expected.shape  # the mean node current the next cell's shortcut carries


def test_resample_current_keeps_the_mean_and_matches_the_next_levels_shape():
    torch.manual_seed(0)
    current = torch.randn(2, 1, 4, 8, 12)  # (T, B, C, H, W) at some level
    down = resample_current(current, 1, 2)
    assert down.shape == (2, 1, 8, 4, 6)  # channels double as the size halves
    torch.testing.assert_close(down[:, :, 0], current[:, :, 0].unflatten(-1, (6, 2)).unflatten(-3, (4, 2)).mean((-1, -3)))
    torch.testing.assert_close(down[:, :, 1], down[:, :, 0])  # each channel repeated
    up = resample_current(current, 1, 0)
    assert up.shape == (2, 1, 2, 16, 24)
    torch.testing.assert_close(up[:, :, 1, ::2, ::2], current[:, :, 2:4].mean(2))
    volume = torch.randn(1, 1, 2, 4, 4, 4)  # 3D (matching): the disparity axis is pooled too
    assert resample_current(volume, 0, 1).shape == (1, 1, 4, 2, 2, 2)


def test_unknown_lif_b_name_is_a_user_error():
    with pytest.raises(UserError, match="feature.nope.neuron"):
        SpikingStereoNet(toy_architecture(lif_b={"feature.nope.neuron": 3.0}))


def test_ann_twin_sums_the_input_over_time():
    torch.manual_seed(0)
    twin = SpikingStereoNet(toy_architecture(), in_channels=2, ann=True).eval()
    pair = toy_pair(48, 72, steps=3)
    summed_left, summed_right = pair["left"].sum(0, keepdim=True)[None], pair["right"].sum(0, keepdim=True)[None]
    with torch.no_grad():
        assert torch.allclose(twin(pair["left"][None], pair["right"][None]), twin(summed_left, summed_right))


def test_small_snn_learns_three_depths_below_one_pixel():
    """Overfit one example with three fronto-parallel planes (4, 10, 16 px): eval-mode MDE < 1 px."""
    torch.manual_seed(0)
    pair = toy_pair(48, 96)
    assert len(pair["disp_px"][pair["valid"]].unique()) == 3
    net = SpikingStereoNet(toy_architecture(filter_multiplier=4), in_channels=2)
    batch = {k: v[None] for k, v in pair.items()}
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    valid = pair["valid"]
    for _ in range(70):
        loss = torch.nn.functional.smooth_l1_loss(net(batch["left"], batch["right"])[0][valid], pair["disp_px"][valid])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    calibrate_batchnorm(net, pair)
    with torch.no_grad():
        pred = net(batch["left"], batch["right"])[0]
    errors = (pred - pair["disp_px"]).abs()[valid]
    assert errors.mean() < 1.0
    for d in (4.0, 10.0, 16.0):  # every plane, not just the average, is recovered
        plane = valid & (pair["disp_px"] == d)
        assert (pred[plane] - d).abs().median() < 1.0
