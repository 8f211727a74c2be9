"""A searched network (feature 2D or matching 3D) as a trellis of cells over levels x layers (SPEC §6).

One class serves the supernet and the retrained network; what differs is data:
- ``transitions[l]`` lists the (source level, move, target level) cells built at layer l: every valid
  move of the trellis table in the supernet, the path's single move in a retrained network;
- ``edge_ops`` lists the ops built on each cell edge (all, or the genotype's).
Forward weights are optional inputs: softmax(alpha) per edge/op and softmax(beta) per move for the
supernet, nothing (all ones) for a retrained network, or a path plus 0/1 op mask for the supernet's
discrete mode.

Stem: level 0 (1/3 of the input). 2D: conv3x3 -> conv3x3 stride 3 -> conv3x3; 3D (on the cost
volume, already at level 0): conv3x3x3 -> conv3x3x3. The first cell takes the last two stem outputs
as s0, s1. A cell at layer l >= 2 takes s0 from the layer l - 2 levels that lead into its source
level, weighted by the probability of coming from each (one level with weight 1 along a path).
The last layer's outputs are fused to level 0 (1x1 conv + BN + LIF, then nearest upsampling); with
``spiking_output=False`` the fuse has no LIF and the net returns that current (a "current" readout).
"""

from __future__ import annotations

import torch
from torch import nn

from models.cells import Cell
from models.neurons import ConvBN, ConvBNLIF
from models.ops import resample_levels
from models.topology import NUM_EDGES, OPS, move_index, trellis

Transition = tuple[int, int, int]  # (source level, move index, target level)


def path_transitions(path: list[int]) -> list[list[Transition]]:
    """The single transition per layer that a decoded path takes (the stem sits at level 0)."""
    table = []
    for layer, level in enumerate(path):
        source = path[layer - 1] if layer else 0
        move = move_index(source, level)
        table.append([(source, move, level)])
    return table


def genotype_edge_ops(genotype: list[list[int]]) -> dict[int, list[int]]:
    """Edge -> [op] for the genotype's rows."""
    return {edge: [op] for edge, op in genotype}


def all_edge_ops() -> dict[int, list[int]]:
    """Every op on every edge (the supernet)."""
    return {edge: list(range(len(OPS))) for edge in range(NUM_EDGES)}


def genotype_op_mask(genotype: list[list[int]]) -> torch.Tensor:
    """Exact 0/1 (edge, op) weights selecting a genotype in the supernet's discrete mode."""
    mask = torch.zeros(NUM_EDGES, len(OPS))
    for edge, op in genotype:
        mask[edge, op] = 1.0
    return mask


def build_stem(dims: int, in_channels: int, channels: int, ann: bool) -> nn.ModuleList:
    if dims == 2:
        return nn.ModuleList([
            ConvBNLIF(in_channels, channels // 2, 3, dims=2, ann=ann),
            ConvBNLIF(channels // 2, channels, 3, stride=3, padding=0, dims=2, ann=ann),
            ConvBNLIF(channels, channels, 3, dims=2, ann=ann),
        ])
    return nn.ModuleList([
        ConvBNLIF(in_channels, channels, 3, dims=3, ann=ann),
        ConvBNLIF(channels, channels, 3, dims=3, ann=ann),
    ])


class TrellisNet(nn.Module):
    def __init__(
        self,
        dims: int,
        in_channels: int,
        filter_multiplier: int,
        steps: int,
        transitions: list[list[Transition]],
        edge_ops: dict[int, list[int]],
        ann: bool = False,
        shortcuts: bool = False,
        spiking_output: bool = True,
    ) -> None:
        super().__init__()
        self.dims = dims
        self.shortcuts = shortcuts
        self.transitions = transitions
        base = steps * filter_multiplier  # channels of a level-0 block; x2 per level
        self.out_channels = base
        self.stem = build_stem(dims, in_channels, base, ann)
        levels_out: list[set[int]] = [{dst for _, _, dst in layer} for layer in transitions]
        cells = {}
        for layer, layer_transitions in enumerate(transitions):
            for source, _, target in layer_transitions:
                s0_levels = [0] if layer < 2 else sorted(self._s0_sources(layer, source))
                cells[self.cell_key(layer, source, target)] = Cell(
                    dims, target, filter_multiplier,
                    s0_channels={lvl: base * 2 ** lvl for lvl in s0_levels},
                    s1_level=source, s1_channels=base * 2 ** source,
                    edge_ops=edge_ops, ann=ann, shortcuts=shortcuts,
                )
        self.cells = nn.ModuleDict(cells)
        self.fuse = nn.ModuleDict({
            str(level): ConvBNLIF(base * 2 ** level, base, 1, dims=dims, ann=ann) if spiking_output
            else ConvBN(base * 2 ** level, base, 1, dims=dims) for level in sorted(levels_out[-1])
        })

    @staticmethod
    def cell_key(layer: int, source: int, target: int) -> str:
        return f"{layer}_{source}_{target}"

    def _s0_sources(self, layer: int, source: int) -> list[int]:
        """Levels of layer - 2 whose cells at layer - 1 lead into ``source``."""
        return [src for src, _, dst in self.transitions[layer - 1] if dst == source]

    def forward(
        self,
        x_seq: torch.Tensor,
        op_weights: torch.Tensor | None = None,
        move_probs: torch.Tensor | None = None,
        path: list[int] | None = None,
        synops: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(T, B, C_in, *spatial) -> (T, B, out_channels, *spatial at level 0).

        ``move_probs`` (layers, levels, 3): per source level, softmax over its valid moves.
        ``path``: compute only this path's cells (the supernet's discrete mode).
        ``synops``, when given, receives per cell its synaptic operations (Cell.forward) times the
        probability that the path passes through the cell: the product of the move probabilities along
        the trellis (1 on a fixed path), so that their sum is the expected count of the mixed network.
        """
        reach: dict[int, torch.Tensor | float] = {0: 1.0}  # probability that the path is at a level
        stem_out = self._stem(x_seq)
        before: dict[int, torch.Tensor] = {0: stem_out[-2]}
        current: dict[int, torch.Tensor] = {0: stem_out[-1]}
        before_i: dict[int, torch.Tensor] = {}  # mean node currents of the cells that made ``before``
        current_i: dict[int, torch.Tensor] = {}  # ... and ``current`` (the stems hand none on)
        for layer, layer_transitions in enumerate(self.transitions):
            nxt: dict[int, torch.Tensor] = {}
            nxt_i: dict[int, torch.Tensor] = {}
            reach_next: dict[int, torch.Tensor | float] = {}
            for source, move, target in layer_transitions:
                if source not in current or (path is not None and target != path[layer]):
                    continue
                s0_by_level, s0_weights = self._s0_inputs(layer, source, before, move_probs, path)
                currents = {"s0": {lvl: before_i[lvl] for lvl in s0_by_level if lvl in before_i},
                            "s1": {source: current_i[source]} if source in current_i else {}}
                cell = self.cells[self.cell_key(layer, source, target)]
                cell_synops: list[torch.Tensor] | None = [] if synops is not None else None
                out, out_i = cell(s0_by_level, current[source], s0_weights, op_weights, currents, cell_synops)
                mixed = move_probs is not None and path is None
                if mixed:
                    out, out_i = move_probs[layer, source, move] * out, move_probs[layer, source, move] * out_i
                if synops is not None:
                    passing = reach[source] * (move_probs[layer, source, move] if mixed else 1.0)
                    reach_next[target] = passing + reach_next.get(target, 0.0)
                    synops.append(passing * torch.stack(cell_synops).sum())
                nxt[target] = out if target not in nxt else nxt[target] + out
                if self.shortcuts:  # only the shortcuts read the currents
                    nxt_i[target] = out_i if target not in nxt_i else nxt_i[target] + out_i
            before, current = current, nxt
            before_i, current_i = current_i, nxt_i
            reach = reach_next
        fused = [resample_levels(self.fuse[str(level)](h), level, 0) for level, h in current.items()]
        return torch.stack(fused).sum(0) if len(fused) > 1 else fused[0]

    def _stem(self, x_seq: torch.Tensor) -> list[torch.Tensor]:
        """Stem outputs (spikes); with shortcuts, a stem layer adds the previous one's current where shapes agree."""
        outputs, h, previous = [], x_seq, None
        for block in self.stem:  # a ConvBNLIF, or DGS's mixed stand-in for one
            current = block.membrane_input(h)
            if self.shortcuts and previous is not None and previous.shape == current.shape:
                current = current + previous
            h, previous = block.neuron(current), current
            outputs.append(h)
        return outputs

    def _s0_inputs(self, layer, source, before, move_probs, path):
        if layer < 2:
            return {0: before[0]}, None
        if path is not None:
            return {path[layer - 2]: before[path[layer - 2]]}, None
        levels = [lvl for lvl in self._s0_sources(layer, source) if lvl in before]
        if move_probs is None:
            return {lvl: before[lvl] for lvl in levels}, None
        probs = {lvl: move_probs[layer - 1, lvl, move_index(lvl, source)] for lvl in levels}
        total = sum(probs.values())
        return {lvl: before[lvl] for lvl in levels}, {lvl: p / total for lvl, p in probs.items()}


def supernet_transitions(num_layers: int) -> list[list[Transition]]:
    """Every valid move of the trellis table (the supernet)."""
    return trellis(num_layers)

