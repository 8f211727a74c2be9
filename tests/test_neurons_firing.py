"""FiringRateRecorder on hand-computable spike patterns."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from common.errors import UserError
from models.firing import FiringRateRecorder
from models.neurons import ConvBNLIF, MultiStepLIF


class TwoBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.feature = nn.Sequential(MultiStepLIF(), MultiStepLIF())
        self.matching = nn.Sequential(MultiStepLIF())
        self.features_extra = MultiStepLIF()  # shares a string prefix with "feature", not a name component

    def forward(self, a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        self.features_extra(a)
        return self.feature(a).sum() + self.matching(c).sum()


def _pattern(rate_numerator: int, total: int) -> torch.Tensor:
    """Membrane inputs (T=1) giving exactly ``rate_numerator`` spikes out of ``total`` (0.8 spikes, 0.3 does not)."""
    x = torch.full((1, total), 0.3)
    x[0, :rate_numerator] = 0.8
    return x


def test_rates_and_penalty_hand_computed():
    net = TwoBranch()
    a = _pattern(3, 8).requires_grad_()  # feature.0: 3/8; feature.1 sees those spikes (1.0 > 0.5) -> 3/8
    c = _pattern(1, 4)  # matching.0: 1/4
    with FiringRateRecorder(net, ["feature"]) as rec:
        net(a, c)
        net(_pattern(1, 8), c)  # second call: feature layers 1/8 each -> (3 + 1) / 16 overall
    assert rec.rates() == {"feature.0": 0.25, "feature.1": 0.25}
    penalty = rec.penalty()
    assert float(penalty.detach()) == pytest.approx(0.25)
    penalty.backward()  # differentiable through the surrogate
    assert a.grad is not None and float(a.grad.abs().sum()) > 0

    with FiringRateRecorder(net, ["feature", "matching"]) as rec:
        net(a, c)
    assert rec.rates() == {"feature.0": 3 / 8, "feature.1": 3 / 8, "matching.0": 0.25}
    assert float(rec.penalty().detach()) == pytest.approx((3 / 8 + 3 / 8 + 0.25) / 3)
    rec.reset()
    assert rec.rates() == {} and float(rec.penalty()) == 0.0
    net(a, c)  # outside the block: hooks are gone
    assert rec.rates() == {}


def test_unknown_prefix_and_ann_model():
    with pytest.raises(UserError, match="feature, features_extra, matching"):
        FiringRateRecorder(TwoBranch(), ["cost"])
    ann = nn.Sequential(ConvBNLIF(2, 3, ann=True))
    with FiringRateRecorder(ann, ["0"]) as rec:
        ann(torch.rand(2, 1, 2, 4, 4))
    assert rec.rates() == {} and float(rec.penalty()) == 0.0


def test_unwraps_dataparallel_names():
    net = TwoBranch()
    with FiringRateRecorder(nn.DataParallel(net), ["matching"]) as rec:
        net(_pattern(0, 4), _pattern(2, 4))
    assert rec.rates() == {"matching.0": 0.5}
