"""Which ground-truth frames become examples, and of which split (SPEC §2).

Real indoor_flying recordings: inclusive frame filters (train filter for training sequences,
test filter for the evaluation sequence), then the evaluation examples in frame order are
shuffled with ``random.seed(0); random.shuffle`` and the first 200 are validation. A synthetic
recording carries its own split in its manifest and only drops its first window(s).

DSEC: its official test sequences have no public ground truth, so two sets of whole training
sequences are held out by default (our choice, documented in the README; overridable): validation
selects the checkpoint, evaluation is scored once. Everything else with ground truth trains.
"""

from __future__ import annotations

import random

from common.errors import UserError
from data_tools.constants import NUM_VALIDATION_EXAMPLES, SPLITS, TEST_FRAME_FILTER, TRAIN_FRAME_FILTER

# DSEC training sequences held out: a city, a suburban and a rural drive in each set.
DSEC_VAL_SEQUENCES = ("zurich_city_09_b", "interlaken_00_g")
DSEC_EVAL_SEQUENCES = ("zurich_city_11_a", "thun_00_a", "zurich_city_05_b")


def real_split(split: int) -> tuple[list[str], str]:
    """(training sequences, evaluation sequence) of an indoor_flying split."""
    if split not in SPLITS:
        raise UserError(f"--split {split}: expected one of {', '.join(map(str, SPLITS))}")
    train, evaluate = SPLITS[split]
    return list(train), evaluate


def real_frames(sequence: str, role: str, num_frames: int) -> list[int]:
    """GT indices kept for a real sequence in a role ('train' or 'eval'), filters inclusive."""
    first, last = (TRAIN_FRAME_FILTER if role == "train" else TEST_FRAME_FILTER)[sequence]
    return list(range(max(0, first), min(num_frames - 1, last) + 1))


def synthetic_frames(num_frames: int, drop_first: int) -> list[int]:
    return list(range(drop_first, num_frames))


def shuffle_eval(examples: list, seed: int = 0) -> list:
    """The published shuffle: ``random.seed(seed); random.shuffle(examples)`` (without touching global state)."""
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    return shuffled


def split_eval(examples: list, num_val: int) -> tuple[list, list]:
    """First ``num_val`` shuffled examples validate, the rest test."""
    return examples[:num_val], examples[num_val:]


def real_num_val(num_examples: int) -> int:
    return min(NUM_VALIDATION_EXAMPLES, num_examples)


def synthetic_num_val(num_examples: int, fraction: float) -> int:
    return int(round(num_examples * fraction))


def dsec_roles(train_sequences: list[str], val: list[str], evaluate: list[str], where: str) -> dict[str, str]:
    """Role ('train', 'val' or 'eval') of every DSEC sequence with ground truth; held-out sets must exist."""
    available = set(train_sequences)
    for option, chosen in (("--val-sequences", val), ("--eval-sequences", evaluate)):
        if not chosen:
            raise UserError(f"{option}: empty; name at least one sequence with ground truth")
        if missing := [s for s in chosen if s not in available]:
            raise UserError(f"{option} {','.join(chosen)}: {', '.join(missing)} not among the training sequences "
                            f"found in {where} ({', '.join(sorted(available)) or 'none'})")
    if overlap := set(val) & set(evaluate):
        raise UserError(f"--val-sequences and --eval-sequences share {', '.join(sorted(overlap))}")
    roles = {s: "train" for s in train_sequences}
    roles.update({s: "val" for s in val})
    roles.update({s: "eval" for s in evaluate})
    return roles
