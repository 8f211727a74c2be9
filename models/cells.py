"""The cell of the search space (SPEC §6), shared by the supernet and the retrained network.

A cell at ``level`` takes s0 (the output of two layers back, possibly from one of several levels)
and s1 (the previous layer's output), brings each to this level (binary resampling) and to
C = filter_multiplier * 2^level channels (1x1 conv + BN + LIF), and computes 3 LIF nodes; node i
feeds its LIF the weighted mean of the ops on its incoming edges. The output concatenates the 3
nodes (3C channels).

Why the mean and not the sum: edge outputs are spikes (0/1), so a plain sum puts the node membrane
on integers, exactly where the Dspike surrogate (support 0 < u < 1) is zero — no gradient would
ever cross a node. The mean of a retrained node's two edges puts "one edge spiked" at u = 0.5, the
centre of the surrogate; the supernet's softmax weights give the same normalisation (weights sum
to the number of edges), and its 0/1 discrete mode the same mean as the retrained cell.

Which ops exist on which edge is data (``edge_ops``): all three on all nine edges in the supernet,
one op on each genotype edge in the retrained network. With ``op_weights`` None every built op
counts with weight 1; the supernet passes softmax(alpha) or a 0/1 mask (its discrete mode), which
is why the two compute the same thing from the same weights.
"""

from __future__ import annotations

import torch
from torch import nn

from models.neurons import ConvBNLIF, make_activation
from models.ops import make_op, resample_levels
from models.topology import EDGES, NUM_NODES, OPS, edges_into, level_channels


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
    ) -> None:
        """``s0_channels`` maps each level s0 may come from to its channel count (one entry when discrete)."""
        super().__init__()
        self.level = level
        self.s1_level = s1_level
        channels = level_channels(filter_multiplier, level)
        self.out_channels = NUM_NODES * channels
        self.pre0 = nn.ModuleDict({
            str(lvl): ConvBNLIF(c, channels, 1, dims=dims, ann=ann) for lvl, c in s0_channels.items()
        })
        self.pre1 = ConvBNLIF(s1_channels, channels, 1, dims=dims, ann=ann)
        self.edges = nn.ModuleDict({
            str(edge): nn.ModuleDict({OPS[op]: make_op(OPS[op], channels, dims, ann) for op in ops})
            for edge, ops in sorted(edge_ops.items())
        })
        self.nodes = nn.ModuleList(make_activation(ann) for _ in range(NUM_NODES))

    def preprocess_s0(self, s0_by_level: dict[int, torch.Tensor], weights: dict[int, torch.Tensor | float]) -> torch.Tensor:
        """Weighted sum over the s0 levels given (a single one with weight 1 in a discrete network)."""
        total = None
        for lvl, s0 in s0_by_level.items():
            term = weights[lvl] * self.pre0[str(lvl)](resample_levels(s0, lvl, self.level))
            total = term if total is None else total + term
        return total

    def forward(
        self,
        s0_by_level: dict[int, torch.Tensor],
        s1: torch.Tensor,
        s0_weights: dict[int, torch.Tensor | float] | None = None,
        op_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(T, B, C, *spatial) sequences in, (T, B, 3C, *spatial) spikes out.

        ``op_weights`` is (9, 3) over (edge, op); None means weight 1 for every built op.
        """
        s0_weights = s0_weights or {lvl: 1.0 for lvl in s0_by_level}
        states = [self.preprocess_s0(s0_by_level, s0_weights), self.pre1(resample_levels(s1, self.s1_level, self.level))]
        for node in range(NUM_NODES):
            total, weight_sum = None, 0.0
            for edge in edges_into(node):
                ops = self.edges[str(edge)] if str(edge) in self.edges else {}
                source = states[EDGES[edge][1]]
                for name, op in ops.items():
                    weight = 1.0 if op_weights is None else op_weights[edge, OPS.index(name)]
                    out = op(source) if op_weights is None else weight * op(source)
                    total = out if total is None else total + out
                    weight_sum = weight_sum + weight
            if total is None:
                raise ValueError(f"node {node} has no incoming op")
            states.append(self.nodes[node](total / weight_sum))
        return torch.cat(states[2:], dim=2)
