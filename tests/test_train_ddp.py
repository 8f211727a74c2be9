"""Two-process DDP on CPU (gloo): training completes and both ranks hold the same weights and b (with the
training-only volume head switched on, so its own DDP wrapper is exercised too)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp
from stereo_toys import ToyStereoDataset, free_port, join_test_group, toy_architecture, toy_config

from models.stereo_net import SpikingStereoNet, current_lif_b
from stereo.distributed import shutdown
from stereo.runtime import seed_everything
from stereo.training import train


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    ctx = join_test_group(rank, world_size, port)
    try:
        cfg = toy_config(epochs=2)
        cfg.train.volume_weight = 1.0  # the volume head is a second DDP module beside the network
        model, _ = train(cfg, toy_architecture(), ToyStereoDataset(4, 48, 72),
                         ToyStereoDataset(3, 48, 72, seed=50), out_dir, ctx, seed=3)
        params = {name: p.detach().clone() for name, p in model.named_parameters()}
        torch.save({"params": params, "b": current_lif_b(model)}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        shutdown(ctx)


def test_two_process_ddp_on_cpu_keeps_ranks_identical(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0]["b"] == ranks[1]["b"]
    for name, value in ranks[0]["params"].items():
        assert torch.equal(value, ranks[1]["params"][name]), name
    last = torch.load(tmp_path / "last.pt", weights_only=True)  # written by rank 0 only
    assert last["epoch"] == 2 and len(last["dgs_history"]) == 1 and "volume_head_state" in last
    assert last["architecture"]["lif_b"] == pytest.approx(ranks[0]["b"])
    for name, value in ranks[0]["params"].items():
        assert torch.equal(value, last["model_state"][name])
    # the ranks trained on different shards and agree on weights that really moved from the start
    seed_everything(3)
    start = dict(SpikingStereoNet(toy_architecture(), in_channels=2).named_parameters())
    assert not torch.equal(start["feature.stem.0.conv.weight"], ranks[0]["params"]["feature.stem.0.conv.weight"])
