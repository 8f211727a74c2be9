"""The shipped pretrained weights (weights/): they load with weights_only, they were trained on the
recording the synthetic generator makes by default, and they beat tuned SGBM on its test frames."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from data_tools import make_synthetic, prepare_mvsec
from data_tools.fingerprint import recording_fingerprint
from eval.evaluate import SGBMMethod, evaluate, network_predictor
from stereo.checkpoint import load_model_from_checkpoint

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
CARD = json.loads((WEIGHTS / "weights.json").read_text())
TEST_FRAMES = 4


@pytest.fixture(scope="module")
def default_recording(tmp_path_factory) -> tuple[Path, Path]:
    """The generator's default recording and its prepared dataset, made afresh."""
    root = tmp_path_factory.mktemp("weights")
    raw, prepared = root / "raw", root / "prepared"
    assert make_synthetic.main(["--out", str(raw)]) in (0, None)
    assert prepare_mvsec.main(["--mvsec-root", str(raw), "--out", str(prepared)]) in (0, None)
    return raw, prepared


def test_the_model_card_lists_every_shipped_checkpoint():
    shipped = sorted(p.name for p in WEIGHTS.glob("*.pt"))
    assert shipped == sorted(entry["file"] for entry in CARD["checkpoints"].values())
    for path in WEIGHTS.glob("*.pt"):
        assert path.stat().st_size <= 5 * 2**20, path
        assert path.stem in (WEIGHTS / "README.md").read_text(), f"{path.name} is not described in weights/README.md"


def test_the_weights_were_trained_on_the_default_synthetic_recording(default_recording):
    raw, _ = default_recording
    recorded = CARD["recording"]
    found = recording_fingerprint(raw, recorded["sequences"])
    assert found == recorded["fingerprint_sha256"], (
        "the synthetic generator's default output changed (fingerprint "
        f"{found[:12]}..., the shipped weights were trained on {recorded['fingerprint_sha256'][:12]}...): "
        "retrain the weights as weights/README.md says and publish them with bench/publish_weights.py")


@pytest.mark.parametrize("name", sorted(CARD["checkpoints"]))
def test_a_shipped_checkpoint_beats_sgbm_on_test_frames(name, default_recording):
    _, prepared = default_recording
    path = WEIGHTS / CARD["checkpoints"][name]["file"]
    payload = torch.load(path, map_location="cpu", weights_only=True)  # plain data only: no pickled objects
    assert bool(payload["ann"]) == CARD["checkpoints"][name]["ann"]
    load_model_from_checkpoint(path)  # the embedded architecture builds and the weights fit it
    run, _, dataset = network_predictor(path, torch.device("cpu"), prepared, "test", TEST_FRAMES, "--checkpoint")
    sgbm = SGBMMethod(prepared, "test", TEST_FRAMES, tune_examples=0)  # tuned on all validation frames, full grid
    method = "ann" if payload["ann"] else "snn"
    scores = evaluate(dataset, {method: run, "sgbm": sgbm}, ["dense"], progress=f"weights {path.name}")
    assert scores.metric(method) < scores.metric("sgbm"), (scores.metric(method), scores.metric("sgbm"))
