"""bench/plot_val_curves.py: one line per run, fine-tunes shifted onto their parent's steps, zoom on a phase."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

from common.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def plot_module():
    spec = importlib.util.spec_from_file_location("plot_val_curves", ROOT / "bench" / "plot_val_curves.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(folder: Path, points: list[tuple[int, float]]) -> Path:
    folder.mkdir(parents=True)
    with (folder / "curve.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "epoch", "train_time_s", "train_loss", "val_mde_px", "val_1pa"])
        writer.writerows([step, 1, 1.0, 1.0, mde, 50.0] for step, mde in points)
    return folder


def test_offset_and_from_step_select_the_points_written(tmp_path):
    a = fake_run(tmp_path / "a", [(80, 3.0), (160, 2.5), (240, 2.25)])
    b = fake_run(tmp_path / "b", [(80, 2.0), (160, 1.5)])
    out = tmp_path / "plot"
    assert plot_module().main([str(a), str(b), "--labels", "A", "B", "--step-offset", "100", "--from-step", "250",
                               "--out", str(out)]) == 0
    with out.with_suffix(".csv").open() as handle:
        rows = [(r["run"], int(r["step"]), float(r["val_mde_px"])) for r in csv.DictReader(handle)]
    assert rows == [("A", 260, 2.5), ("A", 340, 2.25), ("B", 260, 1.5)]  # 180 < 250 is dropped
    assert out.with_suffix(".png").stat().st_size > 0


def test_a_label_count_that_does_not_match_is_a_user_error(tmp_path):
    a = fake_run(tmp_path / "a", [(80, 3.0)])
    with pytest.raises(UserError, match="--labels: 2 labels for 1 runs"):
        plot_module().main([str(a), "--labels", "A", "B", "--out", str(tmp_path / "plot")])
