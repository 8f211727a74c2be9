"""eval/disparity.py and eval/energy.py end to end on a tiny synthetic recording, and their bad inputs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from eval_toys import make_checkpoint, make_recording

from common.errors import UserError
from common.metrics import aggregate, image_metrics
from data_tools.dataset import StereoEventDataset
from eval import disparity, energy
from eval.plots import PANEL_SIZE_PX
from eval.results_table import main as results_table_main
from stereo.checkpoint import load_model_from_checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalcli")
    _, prepared = make_recording(root)
    return {"root": root, "data": prepared, "snn": make_checkpoint(root / "snn.pt"),
            "ann": make_checkpoint(root / "ann.pt", ann=True, seed=1)}


def test_disparity_cli_metrics_baselines_and_viz(setup, tmp_path):
    out = tmp_path / "eval"
    code = disparity.main(["--checkpoint", str(setup["snn"]), "--data", str(setup["data"]), "--baselines", "sgbm,ann",
                           "--ann-checkpoint", str(setup["ann"]), "--viz", "--viz-indices", "0,2", "--out", str(out),
                           "--device", "cpu"])
    assert code == 0
    summary = json.loads((out / "metrics.json").read_text())
    results = summary["results"]
    assert set(results) == {"snn", "ann", "sgbm"}
    assert set(summary["sgbm"]["params"]) >= {"block_size", "blur_sigma_px", "uniqueness_ratio"}
    # the SNN's overall dense MDE equals metrics recomputed here from the model and the dataset
    model, _ = load_model_from_checkpoint(setup["snn"], "cpu")
    dataset = StereoEventDataset(setup["data"], "test", num_bins=2, encoding="binary")
    per_image = []
    with torch.no_grad():
        for item in dataset:
            pred = model(item["left"][None], item["right"][None])[0].numpy()
            per_image.append(image_metrics(pred, item["disp_px"].numpy(), item["valid"].numpy(),
                                           dataset.focal_baseline_px_m))
    expected = aggregate(per_image)
    for mask in ("dense", "events"):
        overall = results["snn"][mask]["all"]
        assert overall["images_total"] == len(dataset)
        assert {"synthetic_flying1", "all"} <= set(results["snn"][mask])
    assert results["snn"]["dense"]["all"]["mde_px"] == pytest.approx(expected["mde_px"], rel=1e-5)
    assert results["snn"]["dense"]["all"]["1pa"] == pytest.approx(expected["1pa"], rel=1e-5)
    assert results["snn"]["events"]["all"]["num_pixels"] < results["snn"]["dense"]["all"]["num_pixels"]
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 3 * 2 * 2  # methods x masks x (sequence, all)
    panels = sorted((out / "panels").glob("*.png"))
    assert [p.name[:5] for p in panels] == ["00000", "00002"]
    for path in [*panels]:
        image = cv2.imread(str(path))
        assert image is not None and image.shape == (PANEL_SIZE_PX[1], PANEL_SIZE_PX[0], 3)
        assert image.std() > 5  # not a blank picture
    assert cv2.imread(str(out / "summary.png")) is not None


def test_energy_cli_tables_and_tradeoff(setup, tmp_path):
    out = tmp_path / "energy"
    code = energy.main(["--checkpoint", str(setup["snn"]), "--ann-checkpoint", str(setup["ann"]), "--data",
                        str(setup["data"]), "--num-examples", "1", "--out", str(out), "--device", "cpu",
                        "--metrics", str(tmp_path / "absent.json"), "--set", "energy.tradeoff_examples=2",
                        "--set", "eval.sgbm_tune_examples=1"])
    assert code == 0
    report = json.loads((out / "energy.json").read_text())
    for net in ("snn", "ann"):
        layers = report[net]["layers"]
        assert report[net]["total"]["energy_mj"] == pytest.approx(sum(r["energy_mj"] for r in layers))
        expected = sum(r["synops"] * 0.9e-9 + r["macs"] * 4.6e-9 for r in layers)
        assert report[net]["total"]["energy_mj"] == pytest.approx(expected)
    assert report["ann"]["total"]["synops"] == 0
    assert report["ann_over_snn"] == pytest.approx(report["ann"]["total"]["energy_mj"] / report["snn"]["total"]["energy_mj"])
    memory = report["memory_model"]  # the second model (eval/memory_energy.py): both totals and their ratio
    assert memory["constants"]["e_add_pj"] == 0.1 and memory["constants"]["sram_pj_per_byte"]["1MiB"] == 25.0
    for net in ("snn", "ann"):
        parts = ("ops_mj", "addressing_mj", "inout_mj", "params_mj", "potential_mj", "module_less_mj")
        assert memory[net]["energy_mj"] == pytest.approx(sum(memory[net][p] for p in parts)) and memory[net]["energy_mj"] > 0
    assert memory["ann"]["potential_mj"] == 0 < memory["snn"]["potential_mj"]
    assert memory["ann_over_snn"] == pytest.approx(memory["ann"]["energy_mj"] / memory["snn"]["energy_mj"])
    assert {p["kind"] for p in report["tradeoff"]} == {"snn", "ann", "sgbm"}
    rows = list(csv.DictReader((out / "energy_layers.csv").open()))
    assert {r["network"] for r in rows} == {"snn", "ann"}
    for name in ("energy_bars.png", "accuracy_energy.png"):
        assert cv2.imread(str(out / name)) is not None


def _foreign_architecture_checkpoint(setup, tmp_path):
    """Weights of one architecture under another's description."""
    payload = torch.load(setup["snn"], weights_only=True)
    other = torch.load(make_checkpoint(tmp_path / "other.pt", filter_multiplier=3), weights_only=True)
    payload["architecture"] = other["architecture"]
    path = tmp_path / "foreign.pt"
    torch.save(payload, path)
    return path


def _write(path, text):
    path.write_text(text)
    return path


def test_bad_inputs_are_one_line_user_errors(setup, tmp_path):
    data, snn, ann = str(setup["data"]), str(setup["snn"]), str(setup["ann"])
    cases = [
        (disparity.main, ["--checkpoint", str(tmp_path / "missing.pt"), "--data", data], "checkpoint not found"),
        (disparity.main, ["--checkpoint", snn, "--data", str(tmp_path / "nowhere")], "nowhere"),
        (disparity.main, ["--checkpoint", snn, "--data", str(setup["root"])], str(setup["root"])),
        (disparity.main, ["--checkpoint", str(_foreign_architecture_checkpoint(setup, tmp_path)), "--data", data],
         "do not fit"),
        (disparity.main, ["--checkpoint", snn, "--data", data, "--baselines", "ann", "--ann-checkpoint", snn],
         "expected an ANN twin"),
        (disparity.main, ["--checkpoint", snn, "--data", data, "--baselines", "sgbm,nope"], "unknown baseline"),
        (disparity.main, ["--checkpoint", str(make_checkpoint(tmp_path / "signed.pt", encoding="signed")), "--data", data],
         "input channels"),
        (energy.main, ["--checkpoint", ann, "--data", data], "expected a spiking"),
        (energy.main, ["--checkpoint", snn, "--data", data, "--ann-checkpoint", str(tmp_path / "no.pt")], "no.pt"),
        (energy.main, ["--checkpoint", snn, "--data", data, "--set", "energy.mem_sram_1mib_pj_per_byte=-1"],
         "must be at least 0"),
        (energy.main, ["--checkpoint", snn, "--data", data, "--set", "energy.mem_e_add_pj=.inf"], "memory model"),
        (energy.main, ["--checkpoint", snn, "--data", data, "--metrics", str(_write(tmp_path / "bad.json", "{")),
                       "--num-examples", "1"], "bad.json: not a readable metrics.json"),
        (energy.main, ["--checkpoint", snn, "--data", data, "--metrics", str(_write(tmp_path / "list.json", "[1, 2]")),
                       "--num-examples", "1"], "list.json: valid JSON but not the layout"),
        (results_table_main, ["--metrics", str(_write(tmp_path / "shape.json", '{"results": {"snn": 3}}')),
                              "--energy", str(tmp_path / "none.json")], "shape.json .*not the layout"),
    ]
    for main, argv, message in cases:
        extra = [] if main is results_table_main else ["--device", "cpu"]
        with pytest.raises(UserError, match=message):
            main([*argv, *extra, "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_cli_exit_code_two_without_traceback(tmp_path):
    repo = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "eval/disparity.py", "--checkpoint", str(tmp_path / "none.pt")],
                            capture_output=True, text=True, cwd=repo)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "none.pt" in result.stderr
    assert "Traceback" not in result.stderr


def test_viz_indices_parsing():
    assert disparity.viz_indices("all", 3, 8) == [0, 1, 2]
    assert disparity.viz_indices("", 100, 5) == [0, 25, 50, 74, 99]
    assert disparity.viz_indices("4,1", 10, 8) == [1, 4]
    with pytest.raises(UserError):
        disparity.viz_indices("12", 10, 8)
    assert np.all(np.diff(disparity.viz_indices("", 7, 8)) == 1)


def test_results_table_matches_energy_by_checkpoint(tmp_path):
    from eval.results_table import results_table

    snn, ann = tmp_path / "snn.pt", tmp_path / "ann.pt"
    row = {"all": {"mde_px": 1.2345, "1pa": 80.04, "mean_depth_err_cm": 12.34, "images_used": 7}}
    metrics = {"split": "test", "labels": {"snn": "SNN", "ann": "ANN twin", "sgbm": "SGBM"},
               "checkpoints": {"snn": str(snn.resolve()), "ann": str(ann.resolve())},
               "results": {"snn": {"dense": row}, "ann": {"dense": row}, "sgbm": {"dense": row}}}
    energy = {"snn": {"checkpoint": str(snn), "total": {"energy_mj": 2.0}},
              "ann": {"checkpoint": str(tmp_path / "other_ann.pt"), "total": {"energy_mj": 50.0}}}
    table = results_table(metrics, energy).splitlines()
    assert table[2] == "| SNN | 1.234 | 80.0 | 12.3 | 2 |"
    assert table[3].endswith("| – |")  # energy of another ANN checkpoint is not borrowed
    assert "7 images" in table[-1]
    with pytest.raises(UserError, match="--mask events"):
        results_table(metrics, energy, "events")
