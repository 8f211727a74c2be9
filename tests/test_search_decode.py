"""Decoding: genotype from hand-set alpha, Viterbi path from hand-set beta (SPEC §6)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from models.arch import genotype_error
from models.decode import decode_genotype, move_probabilities, viterbi_path
from models.topology import MOVES, NUM_LEVELS, path_error

UP, SAME, DOWN = (MOVES.index(name) for name in ("up", "same", "down"))


def test_genotype_keeps_two_strongest_edges_each_with_its_own_strongest_op():
    w = torch.full((9, 3), 0.0)
    # node 0 (edges 0, 1): both kept; edge 1's best op is skip.
    w[0] = torch.tensor([0.1, 0.2, 0.7])
    w[1] = torch.tensor([0.8, 0.1, 0.1])
    # node 1 (edges 2, 3, 4): edge 4 has the largest second-best op (0.45) but the weakest max;
    # sorting columns independently would wrongly keep it.
    w[2] = torch.tensor([0.05, 0.9, 0.05])
    w[3] = torch.tensor([0.1, 0.3, 0.6])
    w[4] = torch.tensor([0.1, 0.45, 0.45])
    # node 2 (edges 5-8): edges 8 and 6 strongest.
    w[5] = torch.tensor([0.34, 0.33, 0.33])
    w[6] = torch.tensor([0.1, 0.2, 0.7])
    w[7] = torch.tensor([0.4, 0.3, 0.3])
    w[8] = torch.tensor([0.9, 0.05, 0.05])
    genotype = decode_genotype(w)
    assert genotype == [[1, 0], [0, 2], [2, 1], [3, 2], [8, 0], [6, 2]]
    assert genotype_error(genotype) is None


def test_genotype_from_raw_alpha_equals_genotype_from_its_softmax():
    alpha = torch.randn(9, 3, generator=torch.Generator().manual_seed(3))
    # per-edge softmax is monotone within an edge but not across edges, so decode must use the same
    # weights the supernet uses: decoding softmax(alpha) is the contract.
    genotype = decode_genotype(torch.softmax(alpha, dim=-1))
    assert genotype_error(genotype) is None
    for node_rows in (genotype[0:2], genotype[2:4], genotype[4:6]):
        for edge, op in node_rows:
            assert op == int(torch.softmax(alpha, -1)[edge].argmax())


def test_move_probabilities_are_a_softmax_over_valid_moves_only():
    beta = torch.zeros(2, NUM_LEVELS, 3)
    beta[:, 0, UP] = 50.0  # invalid at the finest level: must get probability 0
    beta[:, 3, DOWN] = 50.0  # invalid at the coarsest level
    probs = move_probabilities(beta)
    assert probs[0, 0].tolist() == [0.0, 0.5, 0.5]
    assert probs[0, 3].tolist() == [0.5, 0.5, 0.0]
    assert torch.allclose(probs[0, 1], torch.full((3,), 1 / 3))
    assert torch.allclose(probs.sum(-1), torch.ones(2, NUM_LEVELS))


def test_viterbi_prefers_the_globally_best_path_over_the_greedy_one():
    probs = torch.zeros(2, NUM_LEVELS, 3)
    probs[0, 0, SAME], probs[0, 0, DOWN] = 0.6, 0.4
    probs[1, 0, SAME], probs[1, 0, DOWN] = 0.5, 0.5
    probs[1, 1, UP], probs[1, 1, SAME], probs[1, 1, DOWN] = 0.005, 0.005, 0.99
    # greedy: level 0 (0.6) then 0.5 -> 0.30; best: level 1 (0.4) then level 2 (0.99) -> 0.396
    assert viterbi_path(probs) == [1, 2]


def test_viterbi_never_leaves_the_levels_even_when_invalid_moves_score_highest():
    beta = torch.zeros(6, NUM_LEVELS, 3)
    beta[:, :, DOWN] = 5.0
    beta[:, 3, DOWN] = 100.0  # beyond the coarsest level
    beta[:, 3, SAME] = 5.0  # staying is the best valid move there
    path = viterbi_path(move_probabilities(beta))
    assert path == [1, 2, 3, 3, 3, 3]
    beta = torch.zeros(4, NUM_LEVELS, 3)
    beta[:, :, UP] = 5.0
    beta[:, 0, UP] = 100.0  # above the finest level
    beta[:, 0, SAME] = 5.0
    beta[0, 0, DOWN] = 6.0
    assert viterbi_path(move_probabilities(beta)) == [1, 0, 0, 0]
    # raw probabilities with mass on invalid moves are ignored there too
    probs = torch.full((3, NUM_LEVELS, 3), 0.1)
    probs[:, 0, UP] = 0.99
    assert path_error(viterbi_path(probs)) is None


@pytest.mark.parametrize("seed", range(5))
def test_viterbi_matches_brute_force_over_all_valid_paths(seed):
    layers = 4
    probs = move_probabilities(torch.randn(layers, NUM_LEVELS, 3, generator=torch.Generator().manual_seed(seed)))

    def log_score(path):
        total, source = 0.0, 0
        for layer, level in enumerate(path):
            move = {-1: UP, 0: SAME, 1: DOWN}[level - source]
            total += math.log(float(probs[layer, source, move]))
            source = level
        return total

    valid = [list(p) for p in itertools.product(range(NUM_LEVELS), repeat=layers) if path_error(list(p)) is None]
    best = max(valid, key=log_score)
    assert viterbi_path(probs) == best
