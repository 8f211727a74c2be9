"""Process-group queries every layer may ask: world size, rank, sums over ranks.

They read torch.distributed's state, so they work wherever a process group is (or is not)
initialised; ``stereo/distributed.py`` starts and ends the group under torchrun.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return world_size() == 1 or dist.get_rank() == 0


def sum_over_ranks_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (identity in a single process)."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
