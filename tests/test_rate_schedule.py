"""The firing-rate penalty's schedule and per-layer targets (section train, stereo.losses.RatePenalty)."""

from __future__ import annotations

import pytest
import torch
from stereo_toys import ToyStereoDataset, toy_architecture, toy_config
from torch import nn

import stereo.training as training
from common.errors import UserError
from models.firing import FiringRateRecorder, target_rate
from models.neurons import MultiStepLIF
from stereo.config import load_config, rate_penalty_of
from stereo.distributed import DistContext
from stereo.losses import RatePenalty

CPU = DistContext(rank=0, world_size=1, device=torch.device("cpu"))


def test_the_weight_is_off_then_ramps_linearly_then_stays():
    rate = RatePenalty(weight=2.0, start_step=3, ramp_steps=4)
    assert [rate.weight_at(step) for step in range(9)] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert [RatePenalty(weight=2.0, start_step=1).weight_at(s) for s in range(3)] == [0.0, 2.0, 2.0]
    assert RatePenalty().weight_at(10) == 0.0


class TwoLayers(nn.Module):
    """Two LIFs fed constant currents: an input of 1 fires at every step, 0 never, so rates are exact."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = MultiStepLIF(), MultiStepLIF()

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor) -> None:
        self.a(x_a)
        self.b(x_b)


def test_each_layer_is_penalised_above_its_own_target_only():
    net = TwoLayers()
    x_a = torch.tensor([1.0, 1.0, 0.0, 0.0]).repeat(3, 1, 1)  # rate 0.5
    x_b = torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(3, 1, 1)  # rate 0.25
    with FiringRateRecorder(net, [""]) as rec:
        net(x_a, x_b)
        assert rec.rates() == {"a": 0.5, "b": 0.25}
        assert float(rec.penalty()) == pytest.approx(0.375)  # plain mean
        assert float(rec.penalty({"a": 0.2}, 0.1)) == pytest.approx(((0.5 - 0.2) + (0.25 - 0.1)) / 2)
        assert float(rec.penalty({"a": 0.6, "b": 0.3})) == 0.0  # both below target: no pressure
    assert target_rate("feature.stem.0.neuron", {"feature": 0.2, "feature.stem": 0.1}, 0.0) == 0.1
    assert target_rate("featureX.neuron", {"feature": 0.2}, 0.05) == 0.05  # whole components only


def test_the_config_builds_the_schedule_and_refuses_bad_targets(tmp_path):
    cfg = load_config(None, ["train.rate_penalty=1.5", "train.rate_start_step=100", "train.rate_ramp_steps=50",
                             "train.rate_target=0.05", "train.rate_layer_targets=[feature.stem=0.15, matching=0.02]"])
    assert rate_penalty_of(cfg.train) == RatePenalty(1.5, ("feature", "matching"), 100, 50, 0.05,
                                                     (("feature.stem", 0.15), ("matching", 0.02)))
    for bad in ("train.rate_layer_targets=[feature]", "train.rate_layer_targets=[feature=1.5]",
                "train.rate_target=2", "train.rate_ramp_steps=-1"):
        with pytest.raises(UserError, match="train.rate_"):
            load_config(None, [bad])


def test_training_applies_the_scheduled_weight_at_every_optimiser_step(tmp_path, monkeypatch):
    seen = []
    real = training.training_loss

    def recording(model, raw, batch, rate, step, kind, teacher, distill_weight, volume_head, volume_weight):
        seen.append((step, rate.weight_at(step)))
        assert kind == "l1"  # train.loss reaches the objective
        assert teacher is None and volume_head is None  # by default: no distillation, no volume supervision
        return real(model, raw, batch, rate, step, kind, teacher, distill_weight, volume_head, volume_weight)

    monkeypatch.setattr(training, "training_loss", recording)
    cfg = toy_config(epochs=3)  # 4 examples, batch 2: 2 steps an epoch
    cfg.dgs.enabled = False
    cfg.train.rate_penalty, cfg.train.rate_start_step, cfg.train.rate_ramp_steps = 0.4, 2, 2
    cfg.train.loss = "l1"
    training.train(cfg, toy_architecture(), ToyStereoDataset(4, 48, 72), ToyStereoDataset(1, 48, 72, seed=9),
                   tmp_path / "run", CPU)
    assert seen == [(0, 0.0), (1, 0.0), (2, 0.2), (3, 0.4), (4, 0.4), (5, 0.4)]
