"""DGS mechanics (copies, forced choice, write-back, clean-up, DDP) and one end-to-end run on a small task."""

from __future__ import annotations

import copy
import datetime
import json
import os
import socket
import time

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import models.dgs as dgs
from common.errors import UserError
from models.dgs import DGSConfig, DGSScheduler, MixedConvBNLIF, make_candidates, sync_candidates
from models.neurons import ConvBNLIF

STEPS = 4


class DensityNet(nn.Module):
    """A small spiking regressor with the stereo net's naming (feature.stem.0): event density -> scalar."""

    def __init__(self, b: float = 3.0) -> None:
        super().__init__()
        self.feature = nn.Module()
        self.feature.stem = nn.Sequential(ConvBNLIF(2, 6, b=b), ConvBNLIF(6, 6, stride=2))
        self.head = nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C, H, W) -> (B,)
        spikes = self.feature.stem(x.transpose(0, 1))
        return self.head(spikes.mean(dim=(0, 3, 4))).squeeze(1)


def density_batches(count: int, seed: int, batch: int = 6) -> list[dict[str, torch.Tensor]]:
    """Random binary event frames whose per-example density is the regression target."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        density = torch.rand(batch, generator=gen) * 0.6
        frames = (torch.rand(batch, STEPS, 2, 12, 12, generator=gen) < density.view(-1, 1, 1, 1, 1)).float()
        out.append({"x": frames, "y": density * 3})
    return out


def mse_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.mean((model(batch["x"]) - batch["y"]) ** 2)


def _cfg(**kw) -> DGSConfig:
    return DGSConfig(**{"max_batches": 3, "candidate_lr": 0.05, **kw})


def _state_without_b(model: nn.Module, b_key: str = "feature.stem.0.neuron.b") -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if k != b_key}


def test_candidates_start_as_exact_copies_and_resync():
    torch.manual_seed(0)
    layer = ConvBNLIF(2, 4, b=3.0)
    with torch.no_grad():
        layer.bn.running_mean.uniform_()
    deltas = [-0.4, -0.2, 0.0, 0.2, 0.4]
    candidates = make_candidates(layer, [3.0 + d for d in deltas])
    reference = {k: v for k, v in layer.state_dict().items() if k != "neuron.b"}
    for candidate, d in zip(candidates, deltas):
        state = candidate.state_dict()
        assert all(torch.equal(state[k], v) for k, v in reference.items())
        assert float(candidate.neuron.b) == pytest.approx(3.0 + d)
        assert candidate.conv.weight.data_ptr() != layer.conv.weight.data_ptr()  # a copy, not a view
    with torch.no_grad():
        for candidate in candidates:
            candidate.conv.weight.add_(1.0)
            candidate.bn.running_var.mul_(3.0)
    sync_candidates(candidates, layer)
    for candidate, d in zip(candidates, deltas):
        assert torch.equal(candidate.conv.weight, layer.conv.weight)
        assert torch.equal(candidate.bn.running_var, layer.bn.running_var)
        assert float(candidate.neuron.b) == pytest.approx(3.0 + d)


def test_mixed_layer_mixes_membrane_inputs_from_rest():
    torch.manual_seed(1)
    layer = ConvBNLIF(2, 3, b=2.0).eval()
    candidates = make_candidates(layer, [1.0, 5.0])
    with torch.no_grad():
        candidates[1].conv.weight.mul_(-1.5)
    alpha = nn.Parameter(torch.tensor([0.3, -0.1]))
    mixed = MixedConvBNLIF(candidates, alpha, layer.neuron)
    x = torch.rand(5, 2, 2, 6, 6)
    w = torch.softmax(alpha.detach(), 0)
    membrane = w[0] * candidates[0].membrane_input(x) + w[1] * candidates[1].membrane_input(x)
    out = mixed(x)
    assert torch.equal(out, layer.neuron(membrane.detach()))  # the layer's own b (2.0), not 1 or 5
    assert torch.equal(mixed(x), out)  # starts from rest every call
    out.sum().backward()
    assert alpha.grad is not None and float(alpha.grad.abs().sum()) > 0


@pytest.mark.parametrize("b0, k, expected", [(3.0, 4, 3.4), (3.0, 0, 2.6), (3.0, 2, 3.0), (5.9, 4, 6.0), (1.2, 0, 1.0)])
def test_forced_choice_writes_back_clamped_b_and_leaves_weights(monkeypatch, tmp_path, b0, k, expected):
    torch.manual_seed(2)
    model = DensityNet(b=b0).train()
    before = _state_without_b(model)
    modules_before = [(name, id(m)) for name, m in model.named_modules()]

    def favour_k(num, cfg):
        alpha = torch.zeros(num)
        alpha[k] = 5.0
        return alpha

    monkeypatch.setattr(dgs, "initial_alpha", favour_k)
    scheduler = DGSScheduler(_cfg(alpha_lr=0.0))
    assert scheduler.should_run(5)
    new = scheduler.run(model, density_batches(3, seed=3), mse_loss)

    assert new == {"feature.stem.0": pytest.approx(expected)}
    assert float(model.feature.stem[0].neuron.b) == pytest.approx(expected)
    after = model.state_dict()
    assert all(torch.equal(after[key], value) for key, value in before.items())  # weights and BN stats
    assert [(name, id(m)) for name, m in model.named_modules()] == modules_before  # copies gone
    record = scheduler.history[-1]
    assert record["epoch"] == 5 and record["layer"] == "feature.stem.0" and record["batches"] == 3
    assert record["old_b"] == pytest.approx(b0) and record["new_b"] == pytest.approx(expected)
    assert max(range(5), key=lambda i: record["alpha_softmax_sum"][i]) == k

    torch.save(model.state_dict(), tmp_path / "m.pt")
    fresh = DensityNet()
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    assert float(fresh.feature.stem[0].neuron.b) == pytest.approx(expected)


def test_schedule_config_errors_and_history_file(tmp_path):
    scheduler = DGSScheduler(DGSConfig(every_epochs=5))
    assert [e for e in range(16) if scheduler.should_run(e)] == [5, 10, 15]
    assert not DGSScheduler(DGSConfig(enabled=False)).should_run(5)
    with pytest.raises(UserError, match="feature.stem.0, feature.stem.1"):
        DGSScheduler(DGSConfig(layers=["feature.stem.9"])).run(DensityNet(), density_batches(1, 0), mse_loss)
    with pytest.raises(UserError, match="dgs.deltas"):
        DGSScheduler(DGSConfig(deltas=[]))
    with pytest.raises(UserError, match="dgs.b_min"):
        DGSScheduler(DGSConfig(b_min=7.0, b_max=6.0))
    with pytest.raises(UserError, match="no training batches"):
        DGSScheduler(DGSConfig()).run(DensityNet(), [], mse_loss)
    scheduler.history.append({"epoch": 5, "layer": "feature.stem.0", "old_b": 3.0, "new_b": 3.2})
    scheduler.save_history(tmp_path / "runs" / "dgs_history.json")
    saved = json.loads((tmp_path / "runs" / "dgs_history.json").read_text())
    assert saved == {"history": scheduler.history}
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["dgs_history.json"]  # no temp file left


def _train(model: nn.Module, batches, lr: float = 0.02) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for batch in batches:
        optimizer.zero_grad()
        mse_loss(model, batch).backward()
        optimizer.step()


def _held_out_loss(model: nn.Module, batches) -> float:
    with torch.no_grad():
        return sum(float(mse_loss(model, b)) for b in batches) / len(batches)


def test_dgs_end_to_end_on_small_task(capsys):
    torch.manual_seed(0)
    model = DensityNet(b=3.0)
    train, more, held_out = density_batches(30, seed=10), density_batches(15, seed=11), density_batches(6, seed=99)
    _train(model, train)
    scheduler = DGSScheduler(DGSConfig(max_batches=12, candidate_lr=0.05, alpha_lr=0.05,
                                       layers=["feature.stem.0", "feature.stem.1"]))
    new = scheduler.run(model, iter(train), mse_loss, epoch=5)
    assert set(new) == {"feature.stem.0", "feature.stem.1"}
    assert any(r["new_b"] != r["old_b"] for r in scheduler.history)  # b moved
    assert all(r["batches"] == 12 for r in scheduler.history)
    assert all(sum(r["alpha_softmax_sum"]) == pytest.approx(12, abs=1e-4) for r in scheduler.history)

    # b shapes only the gradient, so compare the losses after the same further training with old and new b
    losses = {}
    for label, key in (("old", "old_b"), ("new", "new_b")):
        trial = copy.deepcopy(model)
        for record in scheduler.history:
            trial.get_submodule(record["layer"]).neuron.b.fill_(record[key])
        torch.manual_seed(1)
        _train(trial, more)
        losses[label] = _held_out_loss(trial, held_out)
    with capsys.disabled():
        print(f"\nDGS on the density task: b {[r['old_b'] for r in scheduler.history]} -> "
              f"{[r['new_b'] for r in scheduler.history]}; held-out MSE after 15 more steps: "
              f"old b {losses['old']:.4f}, new b {losses['new']:.4f}")
    assert all(loss < 0.5 for loss in losses.values())  # both still a trained regressor (targets span 0..1.8)


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as tdist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        torch.manual_seed(rank)  # different weights per rank until DDP broadcasts rank 0's
        model = nn.parallel.DistributedDataParallel(DensityNet(b=3.0))
        scheduler = DGSScheduler(DGSConfig(max_batches=3, candidate_lr=0.05, alpha_lr=0.5))
        scheduler.run(model, density_batches(3, seed=100 + rank), mse_loss, epoch=5)  # different data per rank
        scheduler.save_history(os.path.join(out_dir, f"rank{rank}.json"))
    finally:
        tdist.destroy_process_group()


def test_ddp_ranks_agree_on_b(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # spawn, not fork: forking after torch.compile's worker threads can deadlock the children
    workers = mp.start_processes(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + 180
    while not workers.join(timeout=1):
        if time.monotonic() > deadline:
            for process in workers.processes:
                process.kill()
            pytest.fail("the two DDP workers did not finish within 180 s")
    first, second = (json.loads((tmp_path / f"rank{r}.json").read_text())["history"] for r in (0, 1))
    assert first == second  # same Delta, same new b, same rank-averaged softmax(alpha)
