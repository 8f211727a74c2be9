"""Two-process DDP search on CPU (gloo): alpha/beta and weights stay identical on both ranks."""

from __future__ import annotations

import os

import torch
import torch.multiprocessing as mp
from stereo_toys import ToyStereoDataset, free_port, join_test_group
from test_search_loop import tiny_config

from common.paths import SEARCH_CHECKPOINT_NAME as CHECKPOINT_NAME
from stereo.distributed import shutdown
from stereo.searching import run_search


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    ctx = join_test_group(rank, world_size, port)
    try:
        cfg = tiny_config(epochs=1)
        cfg.search.arch_start_epoch, cfg.search.use_dgs = 0, False
        # 8 examples: each rank gets its own shard of 2 in each half
        net, _ = run_search(cfg, ToyStereoDataset(8, 24, 48, seed=10), ToyStereoDataset(2, 24, 48, seed=50),
                            out_dir, ctx, seed=3)
        torch.save({name: p.detach().clone() for name, p in net.named_parameters()},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        shutdown(ctx)


def test_two_process_ddp_search_keeps_alpha_beta_and_weights_identical(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name]), name
    last = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)  # rank 0 writes
    assert last["epoch"] == 1 and last["history"][-1]["arch_loss"] is not None
    assert torch.equal(last["model_state"]["feature.alpha"], ranks[0]["feature.alpha"])
    init = last["history"][0]["feature"]["alpha"]
    assert torch.softmax(ranks[0]["feature.alpha"], -1).tolist() != init  # the architecture did move
