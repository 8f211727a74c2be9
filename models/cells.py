"""The cell of the search space (SPEC §6), shared by the supernet and the retrained network.

A cell at ``level`` takes s0 (the output of two layers back, possibly from one of several levels)
and s1 (the previous layer's output), brings each to this level (binary resampling) and to
C = filter_multiplier * 2^level channels (1x1 conv + BN + LIF), and computes 3 nodes. As in the
authors' retraining cell, edges carry currents: an op is conv + BN (or a skip handing its source's
spikes over as a current), and a node adds the currents of its edges into its membrane — the node is
the cell's only LIF. The output concatenates the 3 nodes' spikes (3C channels).

Why keep the 1x1 pre-processing LIFs (``pre0``/``pre1``), which the authors' cell does not have:
s0 and s1 arrive at other levels and channel counts than the cell's, and a conv that adapts them must
feed a LIF so that every edge op's conv still sees binary spikes and a skip edge still hands spikes.

The node's surrogate sharpness b (the ops' identity, snn_b3 vs snn_b5): the mean b of the node's
incoming conv ops; skip edges bring no b of their own. In the retrained net this is fixed at build time
in the node LIF's ``b`` buffer (so DGS and ``lif_b`` can move it later). In the supernet it is the
op-weighted mean of the same b values, computed each forward from the weights (a 0/1 mask gives the
retrained rule exactly); a node whose weights select only skips uses the default b. One LIF
recursion per node either way.

Membrane shortcuts (``shortcuts=True``, architecture key ``membrane_shortcuts``; MS-ResNet's residual
adapted to the cell): every edge also hands its source's current to the node — a conv edge gives
BN(conv(source spikes)) + source current, a skip edge the source current alone — and the pre layers
add the mean node current of the cell that produced their input, carried to this level without
weights (``resample_current``). Convs still see only spikes; the currents form a real-valued path
through the whole trellis along which the gradient crosses no surrogate (docs/learning.md: without
it the surrogate gradient of the shipped paths says nothing about the layers below their last two
matching cells). Without shortcuts the cell is exactly the authors' retraining cell.

Which ops exist on which edge is data (``edge_ops``): all three on all nine edges in the supernet,
one op on each genotype edge in the retrained network. With ``op_weights`` None every built op
counts with weight 1; the supernet passes softmax(alpha) or a 0/1 mask (its discrete mode), which
is why the two compute the same thing from the same weights.
"""

from __future__ import annotations

import torch
from torch import nn

from models.neurons import DEFAULT_B, ConvBNLIF, make_activation
from models.ops import make_op, resample_current, resample_levels
from models.synops import conv_synops
from models.topology import EDGES, NUM_NODES, OP_INITIAL_B, OPS, edges_into, level_channels


def node_b(op_names: list[str]) -> float:
    """A retrained node's b: the mean b of its incoming conv ops (skips bring none; default if all skip)."""
    values = [OP_INITIAL_B[name] for name in op_names if name in OP_INITIAL_B]
    return sum(values) / len(values) if values else DEFAULT_B


class Cell(nn.Module):
    def __init__(
        self,
        dims: int,
        level: int,
        filter_multiplier: int,
        s0_channels: dict[int, int],
        s1_level: int,
        s1_channels: int,
        edge_ops: dict[int, list[int]],
        ann: bool = False,
        shortcuts: bool = False,
    ) -> None:
        """``s0_channels`` maps each level s0 may come from to its channel count (one entry when discrete)."""
        super().__init__()
        self.level = level
        self.shortcuts = shortcuts
        self.channels = level_channels(filter_multiplier, level)
        self.s1_level = s1_level
        channels = self.channels
        self.out_channels = NUM_NODES * channels
        self.pre0 = nn.ModuleDict({
            str(lvl): ConvBNLIF(c, channels, 1, dims=dims, ann=ann) for lvl, c in s0_channels.items()
        })
        self.pre1 = ConvBNLIF(s1_channels, channels, 1, dims=dims, ann=ann)
        self.edges = nn.ModuleDict({
            str(edge): nn.ModuleDict({OPS[op]: make_op(OPS[op], channels, dims) for op in ops})
            for edge, ops in sorted(edge_ops.items())
        })
        self.nodes = nn.ModuleList(
            make_activation(ann, node_b([OPS[op] for e in edges_into(node) for op in edge_ops.get(e, [])]))
            for node in range(NUM_NODES)
        )

    def _carried(self, current: torch.Tensor | None, from_level: int) -> torch.Tensor | None:
        """A producer cell's mean node current at this cell's level (None: no shortcut, or no current)."""
        if not self.shortcuts or current is None:
            return None
        carried = resample_current(current, from_level, self.level)
        return carried if carried.shape[2] == self.channels else None

    def preprocess(self, s0_by_level: dict[int, torch.Tensor], s1: torch.Tensor,
                   s0_weights: dict[int, torch.Tensor | float], currents: dict[str, dict[int, torch.Tensor]],
                   synops: list[torch.Tensor] | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(spikes, current) of pre0 (weighted sum over the s0 levels given) and of pre1; with ``synops``,
        also append their weighted synaptic operations."""
        spikes0 = current0 = None
        for lvl, s0 in s0_by_level.items():
            carried = self._carried(currents.get("s0", {}).get(lvl), lvl)
            resampled = resample_levels(s0, lvl, self.level)
            spikes, current = self.pre0[str(lvl)].forward_current(resampled, carried)
            w = s0_weights[lvl]
            spikes0 = w * spikes if spikes0 is None else spikes0 + w * spikes
            current0 = w * current if current0 is None else current0 + w * current
            if synops is not None:
                synops.append(w * conv_synops(resampled, self.pre0[str(lvl)].conv))
        carried = self._carried(currents.get("s1", {}).get(self.s1_level), self.s1_level)
        resampled = resample_levels(s1, self.s1_level, self.level)
        if synops is not None:
            synops.append(conv_synops(resampled, self.pre1.conv))
        return [(spikes0, current0), self.pre1.forward_current(resampled, carried)]

    def forward(
        self,
        s0_by_level: dict[int, torch.Tensor],
        s1: torch.Tensor,
        s0_weights: dict[int, torch.Tensor | float] | None = None,
        op_weights: torch.Tensor | None = None,
        currents: dict[str, dict[int, torch.Tensor]] | None = None,
        synops: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, B, C, *spatial) sequences in; (T, B, 3C, *spatial) spikes and the mean node current out.

        ``op_weights`` is (9, 3) over (edge, op); None means weight 1 for every built op. ``currents``
        ({"s0": {level: current}, "s1": {level: current}}) are the producer cells' mean node currents,
        used by the membrane shortcuts. ``synops``, when given, receives the synaptic operations of the
        cell's convs on the spikes of this forward, each weighted by its op (or s0) weight, so that
        their sum is differentiable in alpha (and beta, through the s0 weights).
        """
        s0_weights = s0_weights or {lvl: 1.0 for lvl in s0_by_level}
        states = self.preprocess(s0_by_level, s1, s0_weights, currents or {}, synops)
        for node in range(NUM_NODES):
            current = None
            for edge in edges_into(node):
                ops = self.edges[str(edge)] if str(edge) in self.edges else {}
                source_spikes, source_current = states[EDGES[edge][1]]
                for name, op in ops.items():
                    out = self._edge_current(name, op, source_spikes, source_current)
                    weight = 1.0 if op_weights is None else op_weights[edge, OPS.index(name)]
                    if op_weights is not None:
                        out = weight * out
                    if synops is not None and name in OP_INITIAL_B:  # a conv op (skip costs nothing)
                        synops.append(weight * conv_synops(source_spikes, op.conv))
                    current = out if current is None else current + out
            if current is None:
                raise ValueError(f"node {node} has no incoming op")
            b = None if op_weights is None else self.mixed_node_b(node, op_weights)
            states.append((self.nodes[node](current, b=b), current))
        nodes = states[2:]
        return torch.cat([spikes for spikes, _ in nodes], dim=2), sum(c for _, c in nodes) / NUM_NODES

    def _edge_current(self, name: str, op: nn.Module, spikes: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """What one op hands its node: its current, plus (shortcuts) its source's current."""
        if name == "skip_connect":
            return current if self.shortcuts else spikes
        return op(spikes) + current if self.shortcuts else op(spikes)

    def mixed_node_b(self, node: int, op_weights: torch.Tensor) -> torch.Tensor:
        """The supernet's node b: the op-weighted mean b of the conv ops built into ``node`` (no gradient)."""
        weight_sum = b_sum = op_weights.new_zeros(())
        for edge in edges_into(node):
            for name in self.edges[str(edge)] if str(edge) in self.edges else {}:
                if name in OP_INITIAL_B:
                    weight = op_weights[edge, OPS.index(name)].detach()
                    weight_sum, b_sum = weight_sum + weight, b_sum + weight * OP_INITIAL_B[name]
        return torch.where(weight_sum > 0, b_sum / weight_sum.clamp_min(1e-12), torch.full_like(b_sum, DEFAULT_B))
