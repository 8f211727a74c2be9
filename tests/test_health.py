"""The training-health report: rates, surrogate window and gradients per LIF layer, and its verdicts."""

from __future__ import annotations

import torch
from torch import nn

from models.health import health_report, layer_health
from models.neurons import MultiStepLIF


class TwoLayers(nn.Module):
    """x -> LIF -> scale -> LIF: the first layer's membrane is the input itself (known values)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.first, self.second = MultiStepLIF(), MultiStepLIF()
        self.scale = scale

    def forward(self, x):
        return self.second(self.scale * self.first(x))


def test_rates_window_and_gradient_are_the_hand_computed_values():
    # one step (T = 1): the membrane is the input; 0.7 fires (window: |0.7 - 0.5| < 0.5), 2.0 fires
    # (outside), 0.2 does not (inside), -1.0 does not (outside)
    x = torch.tensor([0.7, 2.0, 0.2, -1.0]).view(1, 4).requires_grad_()
    net = TwoLayers(scale=0.4)  # second membrane 0.4 (inside the window, no spike) or 0 (its edge: outside)
    rows = layer_health(net, lambda: net(x).sum())
    first, second = rows
    assert first.name == "first" and first.rate == 0.5 and first.window_fraction == 0.5
    assert second.rate == 0.0 and second.window_fraction == 0.5 and second.problems == ["silent"]
    assert second.grad_rms == 1.0  # d(sum)/d(second spikes) = 1 for each of the 4 outputs
    # first: 0.4 * Dspike'(0.4 - 0.5) with b = 3 on the two fired outputs, 0 on the others:
    # 0.4 * 3 / (2 tanh 1.5) * (1 - tanh^2 0.3) = 0.60662; RMS over 4 = 0.60662 / sqrt(2)
    assert abs(first.grad_rms - 0.42894) < 1e-4
    assert health_report(rows).endswith("unhealthy layers: second")


def test_saturated_and_closed_window_are_flagged():
    x = torch.full((1, 8), 5.0, requires_grad=True)
    net = TwoLayers(scale=5.0)
    rows = layer_health(net, lambda: net(x).sum())
    assert all(r.rate == 1.0 and r.window_fraction == 0.0 for r in rows)
    assert all({"saturated", "surrogate window closed"} <= set(r.problems) for r in rows)
