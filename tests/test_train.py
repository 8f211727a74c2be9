"""The training loop: checkpoints, logs, exact resume, and clear errors for bad inputs."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from stereo_toys import ToyStereoDataset, toy_architecture, toy_config
from torch.utils.data import DataLoader

from common.errors import UserError
from models.arch import Architecture
from models.neurons import MultiStepLIF
from models.stereo_net import SpikingStereoNet, pad_to_multiple
from stereo.checkpoint import load_checkpoint, load_model_from_checkpoint, save_checkpoint
from stereo.config import load_config
from stereo.distributed import DistContext
from stereo.losses import disparity_loss
from stereo.training import train
from stereo.validation import recalibrate_batchnorm

CPU = DistContext(rank=0, world_size=1, device=torch.device("cpu"))


def toy_data():
    return ToyStereoDataset(4, 48, 72, seed=0), ToyStereoDataset(2, 48, 72, seed=100)


def run(tmp_path, name: str, epochs: int, resume: bool = False, ann: bool = False, val_every_steps: int = 0,
        milestones: list[int] | None = None) -> dict:
    """Train the toy architecture into tmp_path/name; returns the last epoch's log row."""
    train_set, val_set = toy_data()
    cfg = toy_config(epochs)
    cfg.train.val_every_steps = val_every_steps
    cfg.train.milestones = cfg.train.milestones if milestones is None else milestones
    return train(cfg, toy_architecture(), train_set, val_set, tmp_path / name, CPU,
                 ann=ann, resume=resume, seed=3)[1]


def read_csv(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_training_writes_loadable_checkpoints_logs_and_dgs_b(tmp_path):
    row = run(tmp_path, "snn", epochs=2)
    out = tmp_path / "snn"
    last = torch.load(out / "last.pt", weights_only=True)
    best = torch.load(out / "best.pt", weights_only=True)
    assert last["epoch"] == 2 and {"optimizer", "scheduler", "rng", "dgs_history"} <= set(last)
    assert "optimizer" not in best and best["num_bins"] == 2 and best["encoding"] == "binary" and not best["ann"]
    assert best["best_val_mde_px"] == min(float(r["val_mde_px"]) for r in read_csv(out / "metrics.csv"))
    # DGS ran before epoch 2 on the stem and moved its b by one of the deltas; b is written back everywhere
    (entry,) = last["dgs_history"]
    assert entry["layer"] == "feature.stem.0" and entry["epoch"] == 1
    new_b = entry["new_b"]
    assert new_b - 3.0 == pytest.approx(entry["delta"]) and entry["delta"] in (-0.4, -0.2, 0.0, 0.2, 0.4)
    assert last["architecture"]["lif_b"]["feature.stem.0.neuron"] == pytest.approx(new_b)
    assert json.loads((out / "architecture.json").read_text())["lif_b"]["feature.stem.0.neuron"] == pytest.approx(new_b)
    assert json.loads((out / "dgs_history.json").read_text())["history"][0]["new_b"] == new_b
    rows = read_csv(out / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["b/feature.stem.0.neuron"]) == pytest.approx(new_b)
    assert 0.0 < float(rows[1]["rate/feature.stem.0.neuron"]) < 1.0
    assert float(rows[0]["lr"]) == 5e-3 and float(rows[1]["lr"]) == 5e-3 * 0.5  # milestone after epoch 1
    assert row["epoch"] == 2 and any((out / "tensorboard").iterdir())
    # the checkpoint alone rebuilds the network, in eval mode, with the trained weights and b
    model, ckpt = load_model_from_checkpoint(out / "last.pt")
    assert not model.training and ckpt["epoch"] == 2
    assert float(model.feature.stem[0].neuron.b) == pytest.approx(new_b)
    assert all(torch.equal(v, last["model_state"][k]) for k, v in model.state_dict().items())


def test_ann_twin_trains_with_relu_and_no_b(tmp_path):
    run(tmp_path, "ann", epochs=1, ann=True)
    model, ckpt = load_model_from_checkpoint(tmp_path / "ann" / "best.pt")
    assert ckpt["ann"] and model.ann and not any(isinstance(m, MultiStepLIF) for m in model.modules())
    rows = read_csv(tmp_path / "ann" / "metrics.csv")
    assert not any(key.startswith(("rate/", "b/")) for key in rows[0])


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path):
    run(tmp_path, "straight", epochs=2)
    run(tmp_path, "resumed", epochs=1)
    run(tmp_path, "resumed", epochs=2, resume=True)
    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    for key, value in straight["model_state"].items():
        assert torch.equal(value, resumed["model_state"][key]), key
    assert straight["dgs_history"] == resumed["dgs_history"]
    assert straight["best_val_mde_px"] == resumed["best_val_mde_px"]
    drop_time = [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in read_csv(tmp_path / "straight" / "metrics.csv")]
    assert drop_time == [{k: v for k, v in r.items() if k != "epoch_time_s"}
                         for r in read_csv(tmp_path / "resumed" / "metrics.csv")]


def test_a_resumed_run_follows_an_extended_schedule_as_if_it_had_been_set_from_the_start(tmp_path):
    run(tmp_path, "straight", epochs=3, milestones=[1, 2])
    run(tmp_path, "extended", epochs=2, milestones=[1])
    run(tmp_path, "extended", epochs=3, resume=True, milestones=[1, 2])  # a milestone at the saved epoch
    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    extended = torch.load(tmp_path / "extended" / "last.pt", weights_only=True)
    for key, value in straight["model_state"].items():
        assert torch.equal(value, extended["model_state"][key]), key
    lrs = [float(r["lr"]) for r in read_csv(tmp_path / "extended" / "metrics.csv")]
    assert lrs == [5e-3, 2.5e-3, 1.25e-3]  # halved after epoch 2, although the first leg had no milestone there


def test_learning_curve_has_a_point_every_n_steps_and_resumes_exactly(tmp_path):
    run(tmp_path, "straight", epochs=2, val_every_steps=1)  # 4 examples, batch 2: 2 steps an epoch
    run(tmp_path, "resumed", epochs=1, val_every_steps=1)
    run(tmp_path, "resumed", epochs=2, resume=True, val_every_steps=1)
    straight, resumed = (read_csv(tmp_path / name / "curve.csv") for name in ("straight", "resumed"))
    assert [int(r["step"]) for r in straight] == [1, 2, 3, 4]
    assert [int(r["epoch"]) for r in straight] == [1, 1, 2, 2]
    times = [float(r["train_time_s"]) for r in resumed]
    assert all(0 < a < b for a, b in zip(times, times[1:]))  # the training clock continues over the resume
    for a, b in zip(straight, resumed):
        assert (a["step"], a["val_mde_px"], a["train_loss"]) == (b["step"], b["val_mde_px"], b["train_loss"])
    assert len({r["val_mde_px"] for r in straight}) > 1  # every point is a fresh validation


def test_resume_without_checkpoint_or_with_the_wrong_kind_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="last.pt: checkpoint not found"):
        run(tmp_path, "nothing", epochs=1, resume=True)
    run(tmp_path, "ann", epochs=1, ann=True)
    with pytest.raises(UserError, match="ann=True"):
        run(tmp_path, "ann", epochs=2, resume=True, ann=False)


class Arbitrary:
    """A class the weights-only loader must refuse to rebuild."""


def bad_checkpoint_files(tmp_path) -> dict[str, tuple[bytes, str]]:
    """One broken file per kind, with the words its error must contain."""
    good = tmp_path / "good.pt"
    torch.save({"model_state": {"w": torch.zeros(3)}}, good)
    data = good.read_bytes()
    evil = tmp_path / "evil.pt"
    torch.save({"object": Arbitrary()}, evil)
    return {
        "empty.pt": (b"", "the file is empty"),
        "text.pt": (b"epoch 3, loss 0.1\n", "not a PyTorch zip archive"),
        "random.pt": (bytes(range(256)) * 8, "not a PyTorch zip archive"),
        "truncated.pt": (data[: len(data) // 2], "not a checkpoint"),
        "evil.pt": (evil.read_bytes(), "objects other than tensors"),
    }


@pytest.mark.parametrize("name", ["empty.pt", "text.pt", "random.pt", "truncated.pt", "evil.pt"])
def test_every_kind_of_broken_checkpoint_is_one_line_naming_the_file(tmp_path, name):
    content, words = bad_checkpoint_files(tmp_path)[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and words in message and "\n" not in message
    assert "weights_only" not in message  # never torch's advice to turn the safety off


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(UserError, match="missing.pt: checkpoint not found"):
        load_model_from_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(UserError, match="text.pt: not a checkpoint \\(not a PyTorch zip archive"):
        load_model_from_checkpoint(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(UserError, match="foreign.pt: not a SpikeDHS-Stereo checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    run(tmp_path, "snn", epochs=1)
    ckpt = torch.load(tmp_path / "snn" / "best.pt", weights_only=True)
    other: Architecture = toy_architecture(feature_path=(0, 1))
    save_checkpoint(tmp_path / "other.pt", {**ckpt, "architecture": other.to_dict()})
    with pytest.raises(UserError, match="other.pt: weights do not fit the embedded architecture"):
        load_model_from_checkpoint(tmp_path / "other.pt")
    broken = {**ckpt, "architecture": {**other.to_dict(), "matching": {"path": [3], "genotype": []}}}
    save_checkpoint(tmp_path / "broken.pt", broken)
    with pytest.raises(UserError, match="broken.pt .embedded architecture.: bad matching path"):
        load_model_from_checkpoint(tmp_path / "broken.pt")


def test_precise_bn_sets_running_statistics_to_the_average_over_batches():
    train_set, _ = toy_data()
    net = SpikingStereoNet(toy_architecture(), in_channels=2)
    loader = DataLoader(train_set, batch_size=2)
    recalibrate_batchnorm(net, loader, num_batches=2, ctx=CPU)
    stem = net.feature.stem[0]
    means = []
    with torch.no_grad():
        for batch in loader:
            views = torch.cat([batch["left"], batch["right"]]).transpose(0, 1).flatten(0, 1)  # (T*2B, C, H, W)
            means.append(stem.conv(pad_to_multiple(views)).mean(dim=(0, 2, 3)))
    assert torch.allclose(stem.bn.running_mean, torch.stack(means).mean(0), atol=1e-6)
    assert stem.bn.momentum == 0.1 and int(stem.bn.num_batches_tracked) == 2


def test_init_starts_from_a_checkpoints_weights_with_a_fresh_optimiser(tmp_path, capsys):
    run(tmp_path, "base", epochs=1)
    base = load_checkpoint(tmp_path / "base" / "best.pt")
    train_set, val_set = toy_data()
    cfg = toy_config(1)
    cfg.train.lr, cfg.dgs.enabled = 1e-12, False  # a step that cannot move the weights measurably
    train(cfg, toy_architecture(filter_multiplier=4), train_set, val_set, tmp_path / "tuned", CPU, seed=3,
          init=tmp_path / "base" / "best.pt")  # the architecture comes from the checkpoint, not the argument
    tuned = load_checkpoint(tmp_path / "tuned" / "last.pt")
    assert tuned["epoch"] == 1 and tuned["optimizer"]["state"]  # a fresh run of its own
    for key, value in base["model_state"].items():
        if value.is_floating_point() and "running" not in key:
            assert torch.allclose(value, tuned["model_state"][key], atol=1e-6), key
    assert "trained at T" not in capsys.readouterr().out  # same T: no note
    torch.save({**base, "num_bins": 5}, tmp_path / "t5.pt")
    train(cfg, toy_architecture(), train_set, val_set, tmp_path / "from_t5", CPU, init=tmp_path / "t5.pt")
    assert "t5.pt was trained at T = 5 time steps; fine-tuning it at T = 2" in capsys.readouterr().out
    with pytest.raises(UserError, match="exclude each other"):
        train(cfg, toy_architecture(), train_set, val_set, tmp_path / "tuned", CPU, resume=True,
              init=tmp_path / "base" / "best.pt")
    with pytest.raises(UserError, match="an SNN checkpoint; train it without --ann"):
        train(cfg, toy_architecture(), train_set, val_set, tmp_path / "x", CPU, ann=True,
              init=tmp_path / "base" / "best.pt")


def test_the_disparity_loss_is_smooth_l1_or_l1_over_valid_pixels_only():
    batch = {"disp_px": torch.zeros(1, 1, 4), "valid": torch.tensor([[[True, True, True, False]]])}
    pred = torch.tensor([[[0.0, 0.5, 3.0, 100.0]]])  # the last pixel has no ground truth
    assert float(disparity_loss(pred, batch)) == pytest.approx((0.0 + 0.5 * 0.5**2 + (3.0 - 0.5)) / 3)
    assert float(disparity_loss(pred, batch, "l1")) == pytest.approx((0.0 + 0.5 + 3.0) / 3)
    with pytest.raises(UserError, match="train.loss.*smooth_l1, l1"):
        load_config(None, ["train.loss=l2"])
