"""Deep supervision from the cost volume (train.volume_weight): the head's disparity, the volume the
network hands it, the loss, and its training-only state (resume, checkpoints)."""

from __future__ import annotations

import pytest
import torch
from stereo_toys import ToyStereoDataset, calibrate_batchnorm, toy_architecture, toy_config, toy_pair

from common.errors import UserError
from models.cost_volume import correlation_cost_volume
from models.stereo_net import SpikingStereoNet, pad_to_multiple
from stereo.checkpoint import load_checkpoint
from stereo.distributed import DistContext
from stereo.losses import disparity_loss, training_loss
from stereo.training import train
from stereo.volume_supervision import VolumeHead

CPU = DistContext(rank=0, world_size=1, device=torch.device("cpu"))


def test_a_sharp_match_at_one_coarse_disparity_gives_the_centre_of_its_three_pixels():
    head = VolumeHead(volume_channels=1, max_disparity_px=24)
    with torch.no_grad():
        head.cost.weight.fill_(-100.0)  # cost = -100 x volume: a sure match where the volume is 1
        head.cost.bias.zero_()
    volume = torch.zeros(1, 1, 8, 4, 6)  # D = 24 / 3 levels at 1/3 resolution: padded frame 12 x 18
    volume[0, 0, 5, :, :3] = 1.0  # level 5 on the left half, level 2 on the right half
    volume[0, 0, 2, :, 3:] = 1.0
    disparity = head(volume, 10, 16)  # cropped to the frame inside the padding
    assert disparity.shape == (1, 10, 16)
    # Trilinear upsampling (align_corners=False, x3) puts level j exactly on full-resolution index 3j + 1,
    # its neighbours at 2/3 of the peak: the soft argmin is 3j + 1 px.
    assert torch.allclose(disparity[0, :, 1], torch.full((10,), 16.0), atol=1e-6)
    assert torch.allclose(disparity[0, :, 14], torch.full((10,), 7.0), atol=1e-6)


def test_the_returned_volume_is_the_time_mean_of_the_and_of_the_spike_features():
    torch.manual_seed(0)
    pair = toy_pair(40, 60)
    net = calibrate_batchnorm(SpikingStereoNet(toy_architecture()), pair)  # eval mode that lets spikes through
    left, right = pair["left"][None], pair["right"][None]
    with torch.no_grad():
        disparity, volume = net(left, right, return_volume=True)
        assert torch.equal(disparity, net(left, right))
        feats = net.feature(pad_to_multiple(torch.cat([left, right])).transpose(0, 1))  # (T, 2, C, h, w)
        expected = torch.stack([correlation_cost_volume(f[:1], f[1:], net.num_disp) for f in feats]).mean(dim=0)
    assert set(feats.unique().tolist()) <= {0.0, 1.0}  # spikes: the volume is the rate of an AND
    assert volume.shape == (1, feats.shape[2], 8, 16, 24) and torch.equal(volume, expected)
    assert 0 < float(volume.mean()) < 1


def test_training_loss_adds_the_weighted_loss_of_the_head_and_reaches_the_features_through_it():
    pair = toy_pair(24, 48)
    batch = {k: v[None] for k, v in pair.items()}
    torch.manual_seed(1)
    net = SpikingStereoNet(toy_architecture()).train()
    head = VolumeHead(net.feature.out_channels, 24)
    torch.manual_seed(2)
    loss = training_loss(net, net, batch, kind="l1", volume_head=head, volume_weight=0.5)
    torch.manual_seed(2)
    disparity, volume = net(batch["left"], batch["right"], return_volume=True)
    main = disparity_loss(disparity, batch, "l1")
    auxiliary = disparity_loss(head(volume, 24, 48), batch, "l1")
    assert float(auxiliary.detach()) > 1.0  # an untrained head: far from the ground truth, so the term is felt
    assert float(loss.detach()) == pytest.approx(float((main + 0.5 * auxiliary).detach()), rel=1e-6)
    net.zero_grad()
    (0.5 * auxiliary).backward()  # the head's term alone reaches the head and the feature net
    assert head.cost.weight.grad is not None and float(head.cost.weight.grad.abs().sum()) > 0
    assert float(net.feature.stem[0].conv.weight.grad.abs().sum()) > 0
    assert net.cost_head.weight.grad is None  # and not the matching side


def run(tmp_path, name: str, epochs: int, weight: float, resume: bool = False):
    cfg = toy_config(epochs)
    cfg.dgs.enabled = False
    cfg.train.volume_weight = weight
    train(cfg, toy_architecture(), ToyStereoDataset(4, 48, 72, seed=0), ToyStereoDataset(2, 48, 72, seed=100),
          tmp_path / name, CPU, resume=resume, seed=3)
    return load_checkpoint(tmp_path / name / "last.pt")


def test_the_head_trains_with_the_network_resumes_exactly_and_stays_out_of_the_network_checkpoint(tmp_path):
    plain, off = run(tmp_path, "plain", 1, 0.0), run(tmp_path, "off", 1, 0.0)
    assert "volume_head_state" not in plain
    straight = run(tmp_path, "straight", 2, 1.0)
    run(tmp_path, "resumed", 1, 1.0)
    resumed = run(tmp_path, "resumed", 2, 1.0, resume=True)
    for key, value in straight["model_state"].items():
        assert torch.equal(value, resumed["model_state"][key]), key
    for key, value in straight["volume_head_state"].items():
        assert torch.equal(value, resumed["volume_head_state"][key]), key
    assert not torch.equal(straight["model_state"]["feature.stem.0.conv.weight"],
                           plain["model_state"]["feature.stem.0.conv.weight"])
    assert torch.equal(plain["model_state"]["feature.stem.0.conv.weight"], off["model_state"]["feature.stem.0.conv.weight"])
    best = load_checkpoint(tmp_path / "straight" / "best.pt")
    assert "volume_head_state" not in best and not any(k.startswith("volume") for k in best["model_state"])
    with pytest.raises(UserError, match="was trained with train.volume_weight > 0; resume it with the same setting"):
        run(tmp_path, "straight", 3, 0.0, resume=True)
    with pytest.raises(UserError, match="was trained without train.volume_weight > 0"):
        run(tmp_path, "plain", 2, 1.0, resume=True)
