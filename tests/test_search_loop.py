"""The search loop: step separation, an architecture step that lowers its loss, outputs, exact resume."""

from __future__ import annotations

import json

import pytest
import torch
from stereo_toys import ToyStereoDataset, toy_pair

import stereo.searching as searching
from common.errors import UserError
from eval.search_plots import plot_search
from models.arch import load_architecture
from models.supernet import SearchStereoNet
from stereo.config import Config
from stereo.distributed import DistContext
from stereo.losses import disparity_loss
from stereo.searching import arch_step, run_search, weight_step
from stereo.training import train

CPU = DistContext(0, 1, torch.device("cpu"))


def tiny_config(epochs: int = 2) -> Config:
    cfg = Config()
    s = cfg.search
    s.epochs, s.batch_size, s.feature_layers, s.matching_layers, s.filter_multiplier = epochs, 2, 2, 2, 2
    s.max_disparity_px, s.arch_start_epoch, s.retrain_filter_multiplier = 24, 1, 4
    s.weight_lr, s.arch_lr, s.rate_penalty = 0.02, 0.05, 0.05
    s.use_dgs, s.precise_bn_batches = True, 1
    cfg.dgs.every_epochs, cfg.dgs.max_batches = 1, 1
    cfg.train.epochs, cfg.train.batch_size, cfg.train.milestones = 1, 2, [1]
    return cfg


def batch_of(seeds: list[int]) -> dict[str, torch.Tensor]:
    pairs = [toy_pair(24, 48, seed=s) for s in seeds]
    return {key: torch.stack([p[key] for p in pairs]) for key in ("left", "right", "disp_px", "valid")}


def loss_fn(model, batch):
    return disparity_loss(model(batch["left"], batch["right"]), batch)


def tiny_supernet(ann: bool = False) -> SearchStereoNet:
    torch.manual_seed(0)
    return SearchStereoNet(2, 2, 24, feature_layers=2, matching_layers=2, filter_multiplier=2, ann=ann, init_std=0.1)


def test_weight_steps_move_only_weights_and_arch_steps_only_alpha_beta():
    net = tiny_supernet()
    weights, arch = net.weight_parameters(), net.arch_parameters()
    w_opt = torch.optim.SGD(weights, lr=0.05, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(arch, lr=0.01, weight_decay=1e-3)
    batch_a, batch_b = batch_of([0, 1]), batch_of([2, 3])
    for step, opt_kind in enumerate(["w", "a", "w", "a"]):
        before_w = [p.detach().clone() for p in weights]
        before_a = [p.detach().clone() for p in arch]
        if opt_kind == "w":
            weight_step(net, weights, arch, w_opt, batch_a, loss_fn, grad_clip=5.0)
        else:
            arch_step(net, weights, arch, a_opt, batch_b, loss_fn)
        weights_same = all(torch.equal(b, p) for b, p in zip(before_w, weights))
        arch_same = all(torch.equal(b, p) for b, p in zip(before_a, arch))
        assert (weights_same, arch_same) == ((False, True) if opt_kind == "w" else (True, False)), step


def test_an_architecture_step_lowers_the_architecture_loss_on_its_batch():
    """First-order step on alpha/beta: plain gradient descent on a smooth (ANN twin) supernet must descend."""
    net = tiny_supernet(ann=True)
    net.train()
    weights, arch = net.weight_parameters(), net.arch_parameters()
    a_opt = torch.optim.SGD(arch, lr=0.5)
    batch = batch_of([4, 5])
    with torch.no_grad():
        before = float(loss_fn(net, batch))
    reported = arch_step(net, weights, arch, a_opt, batch, loss_fn)
    with torch.no_grad():
        after = float(loss_fn(net, batch))
    assert reported == pytest.approx(before, rel=1e-6)
    assert after < before - 1e-4 * abs(before)


def _search(tmp_path, name: str, epochs: int = 2, resume: bool = False, seed: int = 3) -> list[dict]:
    train_set, val_set = ToyStereoDataset(4, 24, 48, seed=10), ToyStereoDataset(1, 24, 48, seed=50)
    return run_search(tiny_config(epochs), train_set, val_set, tmp_path / name, CPU, resume=resume, seed=seed,
                      draw=plot_search)


def test_short_search_writes_an_architecture_that_training_loads(tmp_path):
    history = _search(tmp_path, "search")[1]
    out = tmp_path / "search"
    for name in ("architecture.json", "search_history.json", "search_last.pt", "search_alpha.png",
                 "search_beta.png", "search_b.png", "dgs_history.json"):
        assert (out / name).is_file(), name
    arch = load_architecture(out / "architecture.json")
    assert arch.feature.filter_multiplier == 4 and arch.max_disparity_px == 24 and arch.num_bins == 2
    last = history[-1]
    assert [e["epoch"] for e in history] == [0, 1, 2]
    assert (arch.feature.path, arch.feature.genotype) == (last["feature"]["path"], last["feature"]["genotype"])
    assert last["arch_loss"] is not None and history[1]["arch_loss"] is None  # arch steps from epoch 2 on
    assert history[1]["feature"]["alpha"] == history[0]["feature"]["alpha"]  # no arch step in epoch 1
    assert history[2]["feature"]["alpha"] != history[1]["feature"]["alpha"]
    assert arch.lif_b["feature.stem.0.neuron"] == last["lif_b"]["feature.stem.0.neuron"]
    saved = json.loads((out / "search_history.json").read_text())
    assert saved["epochs"][-1]["val_mde_px"] == last["val_mde_px"]
    _, row = train(tiny_config(), arch, ToyStereoDataset(2, 24, 48), ToyStereoDataset(1, 24, 48, seed=50),
                   tmp_path / "train", CPU)
    assert row["epoch"] == 1 and row["val_mde_px"] == row["val_mde_px"]  # finite, not NaN


def test_resume_continues_exactly(tmp_path, monkeypatch):
    _search(tmp_path, "straight")
    real_save = searching.save_checkpoint

    def save_then_stop(path, payload):
        real_save(path, payload)
        raise KeyboardInterrupt

    monkeypatch.setattr(searching, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path, "resumed")
    monkeypatch.setattr(searching, "save_checkpoint", real_save)
    assert torch.load(tmp_path / "resumed" / "search_last.pt", weights_only=True)["epoch"] == 1
    _search(tmp_path, "resumed", resume=True)
    straight = torch.load(tmp_path / "straight" / "search_last.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "search_last.pt", weights_only=True)
    for key, value in straight["model_state"].items():
        assert torch.equal(value, resumed["model_state"][key]), key
    drop = {"epoch_time_s"}
    assert [{k: v for k, v in e.items() if k not in drop} for e in straight["history"]] == \
           [{k: v for k, v in e.items() if k not in drop} for e in resumed["history"]]
    assert straight["dgs_history"] == resumed["dgs_history"]


def test_resume_without_a_checkpoint_and_bad_settings_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="search_last.pt: checkpoint not found \\(start the search without --resume"):
        _search(tmp_path, "nothing", resume=True)
    cfg = tiny_config()
    cfg.search.steps = 4
    with pytest.raises(UserError, match="search.steps"):
        run_search(cfg, ToyStereoDataset(2, 24, 48), ToyStereoDataset(1, 24, 48), tmp_path / "bad", CPU)
    with pytest.raises(UserError, match="at least 2 training examples"):
        run_search(tiny_config(), ToyStereoDataset(1, 24, 48), ToyStereoDataset(1, 24, 48), tmp_path / "bad", CPU)
