"""Training health of a spiking network on one batch: per LIF layer, the firing rate, the fraction of
membrane values where the surrogate gradient is non-zero, and the RMS gradient reaching its spikes.

Why: a spiking net that sits on the "predict the mean" plateau looks healthy in its loss alone. The
three numbers say whether layers are silent (no spikes: no signal forward), saturated (spiking always:
no information), outside the surrogate's window (no gradient backward), or whether the gradient grows
or vanishes along the depth (the shipped SNN at BN weight 1 grew it 1e5-fold from the last LIF back to
the first: a chaotic backward pass). The thresholds are the constants below.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.neurons import MultiStepLIF, _forward_loop, lif_modules, unwrap_model

SILENT_RATE = 0.01  # fires on fewer than 1 % of its outputs
SATURATED_RATE = 0.9  # fires on more than 90 %
CLOSED_WINDOW = 0.05  # fewer than 5 % of membrane values inside the surrogate's support
STARVED_GRADIENT = 1e-3  # RMS spike gradient below 1e-3 x the network's median layer
EXPLODED_GRADIENT = 1e3  # above 1e3 x the median layer


@dataclass
class LayerHealth:
    name: str
    rate: float
    window_fraction: float  # membrane values with |h - theta| < 0.5: the surrogate is non-zero there
    grad_rms: float
    problems: list[str]


def _window_fraction(layer: MultiStepLIF, x_seq: torch.Tensor) -> float:
    with torch.no_grad():
        h_seq, _, _ = _forward_loop(x_seq.detach().contiguous(), torch.zeros_like(x_seq[0]), layer.v_threshold,
                                    layer.decay)
        return float(((h_seq - layer.v_threshold).abs() < 0.5).float().mean())


def layer_health(model: nn.Module, loss_fn) -> list[LayerHealth]:
    """Run ``loss_fn()`` (forward on one batch, returns the loss) and backward; one row per LIF layer, in order."""
    net = unwrap_model(model)
    records: dict[str, dict] = {}
    handles = []
    for name, layer in lif_modules(net).items():
        def hook(module, inputs, spikes, name=name):
            if spikes.requires_grad:
                spikes.retain_grad()
            records[name] = {"spikes": spikes, "window": _window_fraction(module, inputs[0])}
        handles.append(layer.register_forward_hook(hook))
    try:
        net.zero_grad(set_to_none=True)
        loss_fn().backward()
    finally:
        for handle in handles:
            handle.remove()
    grads = {n: float(r["spikes"].grad.pow(2).mean().sqrt()) if r["spikes"].grad is not None else 0.0
             for n, r in records.items()}
    median = float(torch.tensor(list(grads.values()) or [0.0]).median())
    rows = []
    for name, record in records.items():
        rate = float(record["spikes"].detach().mean())
        problems = []
        if rate < SILENT_RATE:
            problems.append("silent")
        if rate > SATURATED_RATE:
            problems.append("saturated")
        if record["window"] < CLOSED_WINDOW:
            problems.append("surrogate window closed")
        if median > 0 and grads[name] < STARVED_GRADIENT * median:
            problems.append("gradient-starved")
        if median > 0 and grads[name] > EXPLODED_GRADIENT * median:
            problems.append("gradient exploded")
        rows.append(LayerHealth(name, rate, record["window"], grads[name], problems))
    net.zero_grad(set_to_none=True)
    return rows


def health_report(rows: list[LayerHealth]) -> str:
    """A table, one line per layer, then a verdict naming the unhealthy layers and the gradient growth."""
    lines = [f"{'layer':48s} {'rate':>6s} {'window':>7s} {'grad rms':>9s}  problems"]
    for r in rows:
        lines.append(f"{r.name:48s} {r.rate:6.3f} {r.window_fraction:7.3f} {r.grad_rms:9.2e}  {', '.join(r.problems)}")
    bad = [r.name for r in rows if r.problems]
    if rows and rows[-1].grad_rms > 0:
        growth = rows[0].grad_rms / rows[-1].grad_rms
        lines.append(f"gradient growth from the last LIF layer back to the first: {growth:.3g}x"
                     + (f" (above {EXPLODED_GRADIENT:g}x: the backward pass amplifies along the depth)"
                        if growth > EXPLODED_GRADIENT else ""))
    lines.append(f"unhealthy layers: {', '.join(bad)}" if bad else
                 f"no layer is silent (< {SILENT_RATE:.0%}), saturated (> {SATURATED_RATE:.0%}), has its surrogate "
                 f"window closed (< {CLOSED_WINDOW:.0%}) or a gradient outside {STARVED_GRADIENT:g}..{EXPLODED_GRADIENT:g}x the median")
    return "\n".join(lines)
