"""Decoding a searched supernet into a discrete architecture (SPEC §6).

Genotype: for each node keep the 2 incoming edges whose strongest op weighs most, each with that
strongest op; rows stay [edge, op] pairs taken together (never sorting the edge and op columns
independently, SPEC §11), strongest edge first, nodes in order. This space has no ``none`` op, so
unlike DARTS nothing is excluded: ``skip_connect`` competes with the spiking convs on equal terms
(it is a real op here, kept as identity in the retrained net). Skip collapse, the known DARTS failure,
shows up in the alpha heatmaps rather than being hidden by the decoder.

Path: Viterbi over the per-layer move probabilities (softmax of beta over the valid moves of each
source level), starting from the stem at level 0; the path maximises the product of its move
probabilities, and only valid moves are ever considered.
"""

from __future__ import annotations

import torch

from models.topology import MOVE_DELTA, MOVES, NUM_LEVELS, NUM_NODES, edges_into, valid_moves


def decode_genotype(op_weights: torch.Tensor) -> list[list[int]]:
    """(9, 3) edge/op weights (softmax(alpha) or alpha itself) -> 6 rows [edge, op], two per node."""
    if op_weights.dim() != 2:
        raise ValueError(f"expected (edges, ops) weights, got shape {tuple(op_weights.shape)}")
    weights = op_weights.detach().float().cpu()
    rows: list[list[int]] = []
    for node in range(NUM_NODES):
        candidates = edges_into(node)
        strength = {edge: float(weights[edge].max()) for edge in candidates}
        # Ties break towards the lower edge index so that decoding is deterministic.
        best = sorted(candidates, key=lambda edge: (-strength[edge], edge))[:2]
        rows.extend([edge, int(weights[edge].argmax())] for edge in best)
    return rows


def move_probabilities(beta: torch.Tensor) -> torch.Tensor:
    """(layers, levels, 3) beta -> per source level, softmax over its valid moves; 0 at invalid moves."""
    layers, levels, moves = beta.shape
    if moves != len(MOVES):
        raise ValueError(f"beta must have {len(MOVES)} moves on its last axis, got shape {tuple(beta.shape)}")
    mask = torch.zeros(levels, moves, dtype=torch.bool, device=beta.device)
    for level in range(levels):
        mask[level, valid_moves(level, levels)] = True
    masked = beta.masked_fill(~mask, float("-inf"))
    return torch.softmax(masked, dim=-1).masked_fill(~mask, 0.0)


def viterbi_path(move_probs: torch.Tensor, num_levels: int = NUM_LEVELS) -> list[int]:
    """The most probable level path through the trellis; ``move_probs`` as from ``move_probabilities``.

    The stem sits at level 0; layer l moves from the level of layer l - 1 by a valid move, scoring
    log p(move | source level, layer). Ties break towards the finer (lower) level.
    """
    layers = move_probs.shape[0]
    log_p = torch.log(move_probs.detach().double().cpu().clamp_min(1e-300))
    score = {0: 0.0}  # level -> best log-probability of reaching it after the stem
    back: list[dict[int, int]] = []
    for layer in range(layers):
        new_score: dict[int, float] = {}
        came_from: dict[int, int] = {}
        for source in sorted(score):
            for move in valid_moves(source, num_levels):
                target = source + MOVE_DELTA[MOVES[move]]
                candidate = score[source] + float(log_p[layer, source, move])
                if target not in new_score or candidate > new_score[target]:
                    new_score[target] = candidate
                    came_from[target] = source
        score = new_score
        back.append(came_from)
    level = max(sorted(score), key=lambda lvl: score[lvl])
    path = [level]
    for layer in range(layers - 1, 0, -1):
        level = back[layer][level]
        path.append(level)
    return path[::-1]
