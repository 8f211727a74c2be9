"""Differentiable surrogate-gradient search (DGS, SPEC §5): move each chosen layer's Dspike b.

For a chosen ``ConvBNLIF`` layer with sharpness b, DGS builds K candidate copies of the layer
(conv + BN) with b_k = b + Delta_k. On each of up to ``max_batches`` training batches it
(1) re-copies the layer's current weights into every candidate, (2) lets each candidate in
turn replace the layer, spiking with its own b_k, and take one SGD step on the loss (copies
only), then (3) runs the layer in "mixed" mode: membrane input sum_k softmax(alpha)_k * I_k of
the stepped candidates, spiking with the layer's own b from rest, and takes one Adam step on
alpha; softmax(alpha) is accumulated. At the end b <- clamp(b + Delta[argmax], b_min, b_max) and
the copies are dropped. The rest of the model is left exactly as it was: the layer's own
weights are never stepped and every BN running statistic touched by the extra forward passes is
restored, so DGS changes nothing but b. Under DDP every gradient DGS uses is averaged over
ranks and the accumulated softmax(alpha) is all-reduced, so all ranks pick the same Delta.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from common.atomic import write_json_atomic
from common.distributed import is_main_process, sum_over_ranks_, world_size
from common.errors import UserError
from models.neurons import ConvBNLIF, CurrentToSpikes, MultiStepLIF, unwrap_model


@dataclass
class DGSConfig:
    """Section ``dgs`` of the config (stereo/config.py): which layers, how often, and the b grid."""

    enabled: bool = True
    every_epochs: int = 5
    max_batches: int = 200
    layers: list[str] = field(default_factory=lambda: ["feature.stem.0"])
    deltas: list[float] = field(default_factory=lambda: [-0.4, -0.2, 0.0, 0.2, 0.4])
    alpha_init: float = 1e-3
    alpha_lr: float = 0.01
    candidate_lr: float = 1e-3
    b_min: float = 1.0
    b_max: float = 6.0


LossFn = Callable[[nn.Module, Any], torch.Tensor]


def convbnlif_names(model: nn.Module) -> list[str]:
    """Qualified names of the spiking conv+BN+LIF blocks DGS can search."""
    return [name for name, m in model.named_modules()
            if isinstance(m, ConvBNLIF) and isinstance(m.neuron, MultiStepLIF)]


def resolve_layer(model: nn.Module, name: str) -> tuple[nn.Module, str, ConvBNLIF]:
    """(parent, attribute name, layer) for a ConvBNLIF name; a UserError listing the choices otherwise."""
    available = convbnlif_names(model)
    if name not in available:
        shown = ", ".join(available[:40]) + (" ..." if len(available) > 40 else "")
        raise UserError(f"dgs.layers: '{name}' is not a spiking ConvBNLIF layer of this network "
                        f"(available: {shown or 'none'})")
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    return parent, child, model.get_submodule(name)


def initial_alpha(num_candidates: int, cfg: DGSConfig) -> torch.Tensor:
    """alpha's starting value: the same small constant for every candidate (identical on all ranks)."""
    return torch.full((num_candidates,), float(cfg.alpha_init))


def make_candidates(layer: ConvBNLIF, b_values: list[float]) -> nn.ModuleList:
    """Exact copies of ``layer`` (weights, BN statistics, mode), the k-th spiking with b_values[k]."""
    candidates = nn.ModuleList(copy.deepcopy(layer) for _ in b_values)
    for candidate, b in zip(candidates, b_values):
        candidate.neuron.b.fill_(b)
    return candidates


@torch.no_grad()
def sync_candidates(candidates: nn.ModuleList, layer: ConvBNLIF) -> None:
    """Re-copy the layer's current parameters and buffers into every candidate, keeping each one's b."""
    source = {**dict(layer.named_parameters()), **dict(layer.named_buffers())}
    for candidate in candidates:
        for name, tensor in itertools.chain(candidate.named_parameters(), candidate.named_buffers()):
            if name != "neuron.b":
                tensor.copy_(source[name])


class MixedConvBNLIF(CurrentToSpikes, nn.Module):
    """DGS's mixed layer: membrane input sum_k softmax(alpha)_k I_k spiking with the layer's own neuron.

    The neuron is the original layer's (its current b); it starts from rest on every call. It keeps the
    layer's membrane shortcut (``forward_current``) like the layer it stands in for.
    """

    def __init__(self, candidates: nn.ModuleList, alpha: nn.Parameter, neuron: MultiStepLIF) -> None:
        super().__init__()
        self.candidates = candidates
        self.alpha = alpha
        self.neuron = neuron

    def membrane_input(self, x_seq: torch.Tensor) -> torch.Tensor:
        """The mixed current: sum_k softmax(alpha)_k BN_k(conv_k(x))."""
        weights = torch.softmax(self.alpha, dim=0)
        return sum(w * c.membrane_input(x_seq) for w, c in zip(weights, self.candidates))



@contextlib.contextmanager
def swapped(parent: nn.Module, child: str, replacement: nn.Module) -> Iterator[None]:
    """Put ``replacement`` in place of ``parent.<child>`` for the block, then restore the original."""
    original = getattr(parent, child)
    setattr(parent, child, replacement)
    try:
        yield
    finally:
        setattr(parent, child, original)


def _average_over_ranks(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Mean over DDP ranks, in place (identity in a single process)."""
    for tensor in tensors:
        sum_over_ranks_(tensor).div_(world_size())
    return tensors


def _grads(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """d loss / d params without touching any .grad of the model (zeros where a param is unused)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return _average_over_ranks([torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)])


@dataclass
class _LayerSearch:
    """One layer's search state for one DGS run."""

    name: str
    parent: nn.Module
    child: str
    layer: ConvBNLIF
    old_b: float
    candidates: nn.ModuleList
    alpha: nn.Parameter
    optimizer: torch.optim.Optimizer
    accumulated: torch.Tensor

    def candidate_steps(self, model: nn.Module, batch: Any, loss_fn: LossFn, lr: float) -> None:
        """Each candidate replaces the layer and takes one SGD step on this batch's loss."""
        sync_candidates(self.candidates, self.layer)
        for candidate in self.candidates:
            with swapped(self.parent, self.child, candidate):
                loss = loss_fn(model, batch)
            params = [p for p in candidate.parameters() if p.requires_grad]
            with torch.no_grad():
                for p, g in zip(params, _grads(loss, params)):
                    p.sub_(g, alpha=lr)

    def alpha_step(self, model: nn.Module, batch: Any, loss_fn: LossFn) -> None:
        """The mixed layer replaces the layer; alpha takes one step; softmax(alpha) is accumulated."""
        mixed = MixedConvBNLIF(self.candidates, self.alpha, self.layer.neuron)
        with swapped(self.parent, self.child, mixed):
            loss = loss_fn(model, batch)
        (self.alpha.grad,) = _grads(loss, [self.alpha])
        self.optimizer.step()
        with torch.no_grad():
            self.accumulated += torch.softmax(self.alpha, dim=0)


class DGSScheduler:
    """Runs DGS every ``cfg.every_epochs`` epochs over ``cfg.layers`` and keeps the history of b."""

    def __init__(self, cfg: DGSConfig) -> None:
        if not cfg.deltas:
            raise UserError("dgs.deltas: expected at least one candidate offset, got []")
        if cfg.every_epochs < 1 or cfg.max_batches < 1:
            raise UserError(f"dgs.every_epochs and dgs.max_batches must be >= 1, got {cfg.every_epochs} "
                            f"and {cfg.max_batches}")
        if not 0 < cfg.b_min <= cfg.b_max:
            raise UserError(f"dgs.b_min/b_max: expected 0 < b_min <= b_max, got {cfg.b_min} and {cfg.b_max}")
        if cfg.b_min + min(cfg.deltas) <= 0:
            raise UserError(f"dgs.deltas: b_min + min(deltas) = {cfg.b_min + min(cfg.deltas):g} must stay > 0 "
                            "(a candidate's b must be positive)")
        self.cfg = cfg
        self.history: list[dict[str, Any]] = []
        self._epoch: int | None = None

    def should_run(self, epoch: int) -> bool:
        """True before epoch index ``epoch`` (= epochs completed) when that is a positive multiple of K."""
        self._epoch = epoch
        return self.cfg.enabled and epoch > 0 and epoch % self.cfg.every_epochs == 0

    def run(self, model: nn.Module, batches: Iterable, loss_fn: LossFn, epoch: int | None = None) -> dict[str, float]:
        """One DGS pass over up to ``max_batches`` batches; returns the new b of every chosen layer.

        ``loss_fn(model, batch)`` gets the unwrapped module (DDP hooks bypassed: DGS averages its own
        gradients over ranks, so every rank must see the same number of batches). ``epoch`` for the
        history defaults to the last one given to :meth:`should_run`.
        """
        cfg = self.cfg
        net = unwrap_model(model)
        searches = [self._start(net, name) for name in dict.fromkeys(cfg.layers)]
        saved_buffers = [(buf, buf.detach().clone()) for buf in net.buffers()]
        show = is_main_process()
        used = 0
        try:
            with torch.enable_grad():  # the caller may hold no_grad; DGS needs its own gradients
                for batch in tqdm(itertools.islice(batches, cfg.max_batches), total=cfg.max_batches,
                                  desc="DGS", leave=False, disable=not show):
                    for search in searches:
                        search.candidate_steps(net, batch, loss_fn, cfg.candidate_lr)
                        search.alpha_step(net, batch, loss_fn)
                    used += 1
        finally:
            with torch.no_grad():
                for buf, value in saved_buffers:
                    buf.copy_(value)
        if used == 0:
            raise UserError("DGS got no training batches (is the training split empty?)")
        return {search.name: self._finish(search, used, self._epoch if epoch is None else epoch)
                for search in searches}

    def _start(self, net: nn.Module, name: str) -> _LayerSearch:
        parent, child, layer = resolve_layer(net, name)
        old_b = round(float(layer.neuron.b), 6)
        candidates = make_candidates(layer, [old_b + d for d in self.cfg.deltas])
        alpha = nn.Parameter(initial_alpha(len(self.cfg.deltas), self.cfg).to(layer.neuron.b.device))
        optimizer = torch.optim.Adam([alpha], lr=self.cfg.alpha_lr)
        return _LayerSearch(name, parent, child, layer, old_b, candidates, alpha, optimizer,
                            torch.zeros_like(alpha.detach()))

    def _finish(self, search: _LayerSearch, batches: int, epoch: int | None) -> float:
        """Pick Delta by the rank-averaged accumulated softmax(alpha), write b back, record it."""
        (accumulated,) = _average_over_ranks([search.accumulated])
        # Ties (e.g. a layer whose alpha got no gradient) go to the smallest |Delta|: no signal, no move.
        ties = torch.nonzero(accumulated >= accumulated.max() - 1e-9).flatten().tolist()
        choice = min(ties, key=lambda k: abs(self.cfg.deltas[k]))
        delta = float(self.cfg.deltas[choice])
        new_b = round(min(max(search.old_b + delta, self.cfg.b_min), self.cfg.b_max), 6)
        with torch.no_grad():
            search.layer.neuron.b.fill_(new_b)
        self.history.append({
            "epoch": epoch, "layer": search.name, "old_b": search.old_b, "new_b": new_b, "delta": delta,
            "deltas": [float(d) for d in self.cfg.deltas], "batches": batches,
            "alpha_softmax_sum": [round(float(a), 6) for a in accumulated],
        })
        return new_b

    def save_history(self, path: Path | str) -> None:
        """The b history as JSON (atomic write)."""
        write_json_atomic(path, {"history": self.history})
