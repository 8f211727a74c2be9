"""Weight averages. The exponential one (train.ema_decay): the average itself, b copied not averaged, and
a training run that validates and saves the average and resumes it exactly. The uniform one afterwards
(train.keep_epoch_checkpoints, stereo/average_checkpoints.py): values by hand, counters and b kept."""

from __future__ import annotations

import pytest
import torch
from stereo_toys import ToyStereoDataset, toy_architecture, toy_config
from torch import nn

from common.errors import UserError
from models.neurons import MultiStepLIF
from models.stereo_net import SpikingStereoNet
from stereo import average_checkpoints as average_cli
from stereo.averaging import WeightAverage, average_checkpoints
from stereo.checkpoint import (
    keep_epoch_checkpoint,
    load_checkpoint,
    load_model_from_checkpoint,
    model_payload,
    save_checkpoint,
)
from stereo.config import load_config
from stereo.distributed import DistContext
from stereo.training import train

CPU = DistContext(rank=0, world_size=1, device=torch.device("cpu"))


def test_the_average_is_exponential_and_b_is_copied():
    raw = nn.Sequential(nn.Linear(1, 1, bias=False), MultiStepLIF(b=3.0))
    average = WeightAverage(raw, decay=0.5)
    for weight, b in ((1.0, 3.0), (2.0, 4.0), (3.0, 5.0)):
        with torch.no_grad():
            raw[0].weight.fill_(weight)
            raw[1].b.fill_(b)
        average.update()
    # first update copies (1), then 0.5 * 1 + 0.5 * 2 = 1.5, then 0.5 * 1.5 + 0.5 * 3 = 2.25
    assert float(average.module[0].weight.detach()) == pytest.approx(2.25)
    assert float(average.module[1].b) == 5.0 and average.steps == 3  # DGS's choice, not a mean of 3, 4, 5
    assert float(raw[0].weight.detach()) == 3.0


def run(tmp_path, name: str, epochs: int, resume: bool = False):
    cfg = toy_config(epochs)
    cfg.train.ema_decay = 0.5
    train_set, val_set = ToyStereoDataset(4, 48, 72, seed=0), ToyStereoDataset(2, 48, 72, seed=100)
    train(cfg, toy_architecture(), train_set, val_set, tmp_path / name, CPU, resume=resume, seed=3)
    return torch.load(tmp_path / name / "last.pt", weights_only=True)


def test_training_saves_the_average_and_resumes_it_exactly(tmp_path):
    straight = run(tmp_path, "straight", epochs=2)
    run(tmp_path, "resumed", epochs=1)
    resumed = run(tmp_path, "resumed", epochs=2, resume=True)
    assert straight["ema_steps"] == resumed["ema_steps"] == 4  # 4 examples, batch 2, 2 epochs
    for state in ("model_state", "raw_model_state"):
        for key, value in straight[state].items():
            assert torch.equal(value, resumed[state][key]), (state, key)
    moved = [k for k, v in straight["model_state"].items()
             if v.is_floating_point() and not torch.equal(v, straight["raw_model_state"][k])]
    assert moved  # model_state holds the average, which lags the raw weights
    best = torch.load(tmp_path / "straight" / "best.pt", weights_only=True)
    assert "raw_model_state" not in best and "optimizer" not in best


@pytest.mark.parametrize("value", ["1.0", "-0.1"])
def test_a_decay_outside_0_1_is_refused(value):
    with pytest.raises(UserError, match="train.ema_decay"):
        load_config(None, [f"train.ema_decay={value}"])


def payload_of(seed: int, b: float, epoch: int, arch=None) -> dict:
    torch.manual_seed(seed)
    arch = arch or toy_architecture()
    net = SpikingStereoNet(arch)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d | nn.BatchNorm3d):
            module.running_mean.normal_()
            module.num_batches_tracked.fill_(10 * epoch)
        if isinstance(module, MultiStepLIF):
            module.b.fill_(b)
    return model_payload(net, arch.to_dict(), epoch=epoch, best_val_mde_px=1.0, config={}, ann=False,
                         in_channels=2, num_bins=2, encoding="binary")


def test_keeping_epoch_checkpoints_deletes_all_but_the_last_ones(tmp_path):
    for epoch in range(1, 6):
        keep_epoch_checkpoint(tmp_path, epoch, payload_of(epoch, 3.0, epoch), keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_004.pt", "epoch_005.pt"]
    assert load_checkpoint(tmp_path / "epoch_004.pt")["epoch"] == 4


def test_checkpoints_average_uniformly_except_counters_and_b(tmp_path):
    paths = []
    for epoch, (seed, b) in enumerate(((0, 2.0), (1, 3.0), (2, 5.0)), start=1):
        paths.append(tmp_path / f"epoch_{epoch:03d}.pt")
        save_checkpoint(paths[-1], payload_of(seed, b, epoch))
    states = [load_checkpoint(p)["model_state"] for p in paths]
    averaged = average_checkpoints(paths)
    key = "feature.stem.0.conv.weight"
    by_hand = (states[0][key] + states[1][key] + states[2][key]) / 3
    assert torch.allclose(averaged["model_state"][key], by_hand, atol=1e-7)
    assert not torch.allclose(by_hand, states[2][key])
    bn_key = next(k for k in states[0] if k.endswith("running_mean"))
    assert torch.allclose(averaged["model_state"][bn_key], sum(s[bn_key] for s in states) / 3, atol=1e-7)
    counter = next(k for k in states[0] if k.endswith("num_batches_tracked"))
    assert int(averaged["model_state"][counter]) == 30  # the last one's, not a mean
    b_keys = [k for k in states[0] if k.endswith(".b")]
    assert b_keys and all(float(averaged["model_state"][k]) == 5.0 for k in b_keys)  # DGS's last choice
    assert averaged["averaged_epochs"] == [1, 2, 3] and averaged["epoch"] == 3


def test_the_average_cli_writes_a_loadable_network_and_refuses_foreign_runs(tmp_path, capsys):
    first, second, other = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"
    save_checkpoint(first, payload_of(0, 3.0, 1))
    save_checkpoint(second, payload_of(1, 3.0, 2))
    save_checkpoint(other, payload_of(2, 3.0, 3, arch=toy_architecture(filter_multiplier=4)))
    average_cli.main([str(first), str(second), "--out", str(tmp_path / "avg.pt")])
    net, ckpt = load_model_from_checkpoint(tmp_path / "avg.pt")
    key = "feature.stem.0.conv.weight"
    expected = (load_checkpoint(first)["model_state"][key] + load_checkpoint(second)["model_state"][key]) / 2
    assert torch.allclose(net.state_dict()[key], expected) and ckpt["averaged_epochs"] == [1, 2]
    assert "epochs 1, 2" in capsys.readouterr().out
    average_cli.main([str(first), str(second)])
    assert (tmp_path / "averaged.pt").is_file()  # the default: beside them
    with pytest.raises(UserError, match="another architecture or input format"):
        average_cli.main([str(first), str(other), "--out", str(tmp_path / "bad.pt")])
    assert not (tmp_path / "bad.pt").exists()


def test_training_keeps_the_last_epochs_validated_weights(tmp_path):
    cfg = toy_config(3)
    cfg.train.keep_epoch_checkpoints = 2
    train(cfg, toy_architecture(), ToyStereoDataset(4, 48, 72, seed=0), ToyStereoDataset(2, 48, 72, seed=100),
          tmp_path / "run", CPU, seed=3)
    kept = sorted((tmp_path / "run" / "epochs").iterdir())
    assert [p.name for p in kept] == ["epoch_002.pt", "epoch_003.pt"]
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    for key, value in load_checkpoint(kept[-1])["model_state"].items():
        assert torch.equal(value, last["model_state"][key]), key
