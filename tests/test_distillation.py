"""Distillation from a teacher checkpoint (train.teacher): the KL term, the teacher's frozen forward and
its wiring into the training loss and loop."""

from __future__ import annotations

import math

import pytest
import torch
from stereo_toys import ToyStereoDataset, calibrate_batchnorm, toy_architecture, toy_config, toy_pair
from torch.utils.data import Dataset

from common.errors import UserError
from models.regression import soft_argmin_disparity
from models.stereo_net import SpikingStereoNet
from stereo.checkpoint import load_checkpoint, model_payload, save_checkpoint
from stereo.config import config_to_dict, load_config
from stereo.distillation import Teacher, distillation_loss, teacher_input_format
from stereo.distributed import DistContext
from stereo.losses import disparity_loss, training_loss
from stereo.training import train

CPU = DistContext(rank=0, world_size=1, device=torch.device("cpu"))


def save_network(net: SpikingStereoNet, path, ann: bool, num_bins: int = 2) -> None:
    payload = model_payload(net, toy_architecture().to_dict(), ann=ann, in_channels=2, num_bins=num_bins,
                            encoding="binary", config=config_to_dict(toy_config()), epoch=1, best_val_mde_px=1.0)
    save_checkpoint(path, payload)


class WithTeacherViews(Dataset):
    """A toy dataset whose teacher views are its own views (a teacher trained on the same input format)."""

    def __init__(self, base: ToyStereoDataset) -> None:
        self.base, self.teacher_input = base, (2, "binary")
        self.in_channels, self.num_bins, self.encoding = base.in_channels, base.num_bins, base.encoding

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.base[index])
        item["teacher_left"], item["teacher_right"] = item["left"], item["right"]
        return item


def test_the_kl_term_matches_a_hand_computation_and_vanishes_for_equal_distributions():
    student = torch.tensor([0.0, 1.0]).view(1, 2, 1, 1)  # cost: softmin gives p = (e^0, e^-1) / Z
    teacher = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    p_s = torch.tensor([1.0, math.exp(-1)]) / (1 + math.exp(-1))
    p_t = p_s.flip(0)
    expected = float((p_t * (p_t / p_s).log()).sum())
    assert expected == pytest.approx(2 * float(p_s[0]) - 1, rel=1e-6)  # (2a - 1) log(a / (1 - a)), a / (1 - a) = e
    assert float(distillation_loss(student, teacher)) == pytest.approx(expected, rel=1e-6)
    two_pixels = torch.cat([student, student], dim=3), torch.cat([teacher, student], dim=3)
    assert float(distillation_loss(*two_pixels)) == pytest.approx(expected / 2, rel=1e-6)  # mean over pixels
    assert float(distillation_loss(teacher, teacher)) == pytest.approx(0.0, abs=1e-7)


def test_the_returned_cost_is_what_the_disparity_was_regressed_from():
    torch.manual_seed(0)
    net = SpikingStereoNet(toy_architecture()).eval()
    pair = toy_pair(40, 60)
    left, right = pair["left"][None], pair["right"][None]
    with torch.no_grad():
        disparity, cost = net(left, right, return_cost=True)
        assert cost.shape == (1, 24, 40, 60)  # cropped back to the input's size, every disparity
        assert torch.equal(disparity, net(left, right))
        assert torch.allclose(disparity, soft_argmin_disparity(cost))


def test_training_loss_adds_the_weighted_kl_against_the_frozen_teacher(tmp_path):
    torch.manual_seed(1)
    pair = toy_pair(24, 48)
    teacher_net = SpikingStereoNet(toy_architecture(), ann=True)
    with torch.no_grad():
        calibrate_batchnorm(teacher_net, pair)  # costs that vary with disparity in eval mode
        teacher_net.cost_head.weight.mul_(20.0)  # a sure teacher: peaked distributions, far from the student's
    save_network(teacher_net, tmp_path / "teacher.pt", ann=True)
    teacher = Teacher(tmp_path / "teacher.pt", torch.device("cpu"), max_disparity_px=24)
    assert teacher.input_format == (2, "binary") and teacher_input_format(str(tmp_path / "teacher.pt")) == (2, "binary")
    student = SpikingStereoNet(toy_architecture()).train()
    batch = {k: v[None] for k, v in pair.items()}
    batch["teacher_left"], batch["teacher_right"] = batch["left"], batch["right"]
    torch.manual_seed(2)
    loss = training_loss(student, student, batch, kind="l1", teacher=teacher, distill_weight=0.5)
    torch.manual_seed(2)
    disparity, cost = student(batch["left"], batch["right"], return_cost=True)
    with torch.no_grad():
        teacher_cost = teacher_net.eval()(batch["left"], batch["right"], return_cost=True)[1]
    kl = distillation_loss(cost, teacher_cost).detach()
    assert float(kl) > 0.1
    expected = float(disparity_loss(disparity, batch, "l1").detach() + 0.5 * kl)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert all(p.grad is None for p in teacher.model.parameters())  # the teacher stays frozen
    assert student.cost_head.weight.grad is not None


def test_a_run_with_a_teacher_trains_and_records_it_and_bad_teachers_are_user_errors(tmp_path):
    torch.manual_seed(1)
    save_network(SpikingStereoNet(toy_architecture(), ann=True), tmp_path / "teacher.pt", ann=True)
    train_set, val_set = WithTeacherViews(ToyStereoDataset(4, 48, 72, seed=0)), ToyStereoDataset(2, 48, 72, seed=100)
    cfg = toy_config(1)
    cfg.train.teacher, cfg.train.distill_weight = str(tmp_path / "teacher.pt"), 0.0
    train(cfg, toy_architecture(), train_set, val_set, tmp_path / "w0", CPU, seed=3)
    train(toy_config(1), toy_architecture(), train_set, val_set, tmp_path / "plain", CPU, seed=3)
    cfg.train.distill_weight = 2.0
    train(cfg, toy_architecture(), train_set, val_set, tmp_path / "w2", CPU, seed=3)
    states = {name: load_checkpoint(tmp_path / name / "last.pt")["model_state"] for name in ("w0", "plain", "w2")}
    weight = "cost_head.weight"
    assert torch.equal(states["w0"][weight], states["plain"][weight])  # weight 0: the plain run exactly
    assert not torch.allclose(states["w2"][weight], states["plain"][weight])  # the term moves the weights
    assert load_checkpoint(tmp_path / "w2" / "last.pt")["config"]["train"]["teacher"] == str(tmp_path / "teacher.pt")

    cfg.train.teacher = str(tmp_path / "missing.pt")
    with pytest.raises(UserError, match="missing.pt: checkpoint not found"):
        teacher_input_format(cfg.train.teacher)
    with pytest.raises(UserError, match="predicts up to 24 px, the student up to 48 px"):
        Teacher(tmp_path / "teacher.pt", torch.device("cpu"), max_disparity_px=48)
    cfg.train.teacher = str(tmp_path / "teacher.pt")
    with pytest.raises(UserError, match="must also carry the teacher's input"):
        train(cfg, toy_architecture(), ToyStereoDataset(4, 48, 72, seed=0), val_set, tmp_path / "x", CPU, seed=3)
    with pytest.raises(UserError, match="train.distill_weight.*at least 0"):
        load_config(None, ["train.distill_weight=-1"])
