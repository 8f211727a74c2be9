"""Firing rates of LIF layers, recorded with forward hooks (for logging and the rate penalty, SPEC §7).

A layer's rate is the fraction of its outputs that are spikes, over all recorded calls (spikes
summed, divided by outputs counted). ``penalty()`` keeps the graph: the mean over the recorded
layers of their rates, differentiable through the Dspike surrogate, for loss + lambda_rate * rate;
with targets, the mean of each layer's excess over its own target rate (``max(0, rate - target)``),
so that a user steers layers towards rates instead of pushing every one towards silence.
"""

from __future__ import annotations

from types import TracebackType

import torch
from torch import nn

from common.errors import UserError
from models.neurons import lif_modules, unwrap_model


def _matches(name: str, prefixes: list[str]) -> bool:
    """Module-name prefix match on whole components ('feature' matches 'feature.stem.0.neuron')."""
    return any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)


class FiringRateRecorder:
    """Context manager hooking the LIF layers whose qualified names start with one of ``prefixes``."""

    def __init__(self, model: nn.Module, prefixes: list[str]) -> None:
        net = unwrap_model(model)
        lifs = lif_modules(net)
        self.layers = {name: m for name, m in lifs.items() if _matches(name, list(prefixes))}
        if lifs and not self.layers:
            tops = sorted({name.split(".")[0] for name in lifs})
            raise UserError(f"rate layers {list(prefixes)} match no LIF layer of this network "
                            f"(LIF layers live under: {', '.join(tops)})")
        self._device = next(net.parameters(), torch.zeros(())).device
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded so far (keep the hooks)."""
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def _hook(self, name: str):
        def record(_module: nn.Module, _inputs, spikes: torch.Tensor) -> None:
            total = spikes.sum()
            self._sums[name] = total if name not in self._sums else self._sums[name] + total
            self._counts[name] = self._counts.get(name, 0) + spikes.numel()
        return record

    def __enter__(self) -> FiringRateRecorder:
        self._handles = [m.register_forward_hook(self._hook(name)) for name, m in self.layers.items()]
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def rates(self) -> dict[str, float]:
        """Mean spike rate per recorded layer (layers that never ran are left out)."""
        return {name: float(self._sums[name].detach()) / self._counts[name] for name in self._sums}

    def penalty(self, targets: dict[str, float] | None = None, default_target: float = 0.0) -> torch.Tensor:
        """Differentiable mean over the recorded layers of ``max(0, rate - target)``; a zero tensor if
        nothing was recorded. A layer's target is that of the longest prefix of ``targets`` naming it,
        else ``default_target`` (0: the plain mean rate)."""
        if not self._sums:
            return torch.zeros((), device=self._device)
        excess = [torch.relu(self._sums[n] / self._counts[n] - target_rate(n, targets or {}, default_target))
                  for n in self._sums]
        return torch.stack(excess).mean()


def target_rate(name: str, targets: dict[str, float], default: float) -> float:
    """The target of the longest module-name prefix in ``targets`` that names ``name`` (whole components)."""
    matching = [prefix for prefix in targets if _matches(name, [prefix])]
    return targets[max(matching, key=len)] if matching else default
