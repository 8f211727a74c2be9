"""The search space as data (SPEC §6): cell edges, candidate ops, and the trellis of levels.

Both the supernet and the retrained network are built by looping over these tables, in 2D
(features) and 3D (matching) alike, so the two cannot drift apart.

Cell: inputs s0 (two layers back) and s1 (previous layer), 3 nodes; edge e feeds node
EDGES[e][0] from source EDGES[e][1] (0 = s0, 1 = s1, 2 + j = node j).

Trellis: levels 0..3 are 1/3, 1/6, 1/12, 1/24 of the (padded) input. The stem sits at level 0;
layer l moves from the level of layer l - 1 (the stem for l = 0) by one of MOVES.
beta has shape (layers, levels, 3): beta[l, i, m] scores the move m out of source level i into
layer l; a softmax runs over the valid moves of each source level only.
"""

from __future__ import annotations

OPS = ("skip_connect", "snn_b3", "snn_b5")
OP_INITIAL_B = {"snn_b3": 3.0, "snn_b5": 5.0}
NUM_NODES = 3
EDGES: tuple[tuple[int, int], ...] = (
    (0, 0), (0, 1),
    (1, 0), (1, 1), (1, 2),
    (2, 0), (2, 1), (2, 2), (2, 3),
)
NUM_EDGES = len(EDGES)
NUM_LEVELS = 4
LEVEL_DOWNSAMPLE = (3, 6, 12, 24)
PAD_MULTIPLE = LEVEL_DOWNSAMPLE[-1]
MOVES = ("up", "same", "down")
MOVE_DELTA = {"up": -1, "same": 0, "down": +1}


def move_index(source_level: int, target_level: int) -> int:
    """Index in MOVES of the move from ``source_level`` to ``target_level`` (one level at most)."""
    delta = target_level - source_level
    return next(m for m, name in enumerate(MOVES) if MOVE_DELTA[name] == delta)


def edges_into(node: int) -> list[int]:
    """Edge indices that feed ``node``."""
    return [e for e, (target, _) in enumerate(EDGES) if target == node]


def valid_moves(level: int, num_levels: int = NUM_LEVELS) -> list[int]:
    """Indices into MOVES that stay inside [0, num_levels)."""
    return [m for m, name in enumerate(MOVES) if 0 <= level + MOVE_DELTA[name] < num_levels]


def reachable_levels(layer: int, num_levels: int = NUM_LEVELS) -> list[int]:
    """Levels that layer ``layer`` can sit at, starting from the stem at level 0."""
    return list(range(min(layer + 2, num_levels)))


def trellis(num_layers: int, num_levels: int = NUM_LEVELS) -> list[list[tuple[int, int, int]]]:
    """Per layer, the transitions (source level, move index, target level) the supernet builds."""
    table = []
    for layer in range(num_layers):
        sources = [0] if layer == 0 else reachable_levels(layer - 1, num_levels)
        table.append([
            (src, m, src + MOVE_DELTA[MOVES[m]]) for src in sources for m in valid_moves(src, num_levels)
        ])
    return table


def level_channels(filter_multiplier: int, level: int) -> int:
    """Channels of one cell node at ``level`` (doubling per level, as LEAStereo)."""
    return filter_multiplier * 2 ** level


def path_error(path: list[int], num_levels: int = NUM_LEVELS) -> str | None:
    """None for a valid layer path, else what is wrong with it."""
    if not path:
        return "the path is empty"
    if any(not isinstance(level, int) or not 0 <= level < num_levels for level in path):
        return f"levels must be integers in 0..{num_levels - 1}, got {path}"
    if path[0] > 1:
        return f"the first layer must sit at level 0 or 1 (the stem is at level 0), got {path[0]}"
    for i in range(1, len(path)):
        if abs(path[i] - path[i - 1]) > 1:
            return f"layers {i - 1} and {i} jump from level {path[i - 1]} to {path[i]} (at most one level per layer)"
    return None
