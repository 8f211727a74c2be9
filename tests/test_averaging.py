"""The weight average (train.ema_decay): the exponential average itself, b copied not averaged, and a
training run that validates and saves the average and resumes it exactly."""

from __future__ import annotations

import pytest
import torch
from stereo_toys import ToyStereoDataset, toy_architecture, toy_config
from torch import nn

from common.errors import UserError
from models.neurons import MultiStepLIF
from stereo.averaging import WeightAverage
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
