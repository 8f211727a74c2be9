"""stereo/train.py as a user meets it: bad architecture files and options give one clear line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import UserError
from common.paths import SHIPPED_ARCHITECTURE
from stereo.train import main

ROOT = Path(__file__).resolve().parent.parent


def write_arch(tmp_path: Path, edit) -> Path:
    payload = json.loads(SHIPPED_ARCHITECTURE.read_text())
    edit(payload)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(payload))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda a: a["feature"]["genotype"][0].__setitem__(1, 7), "bad feature genotype: row 0: unknown op 7"),
    (lambda a: a["matching"]["genotype"][5].__setitem__(0, 12), "bad matching genotype: row 5: edge 12 out of range"),
    (lambda a: a["matching"].__setitem__("path", [1, 3, 2, 1]), "bad matching path: layers 0 and 1 jump from level 1 to 3"),
    (lambda a: a["feature"].__setitem__("path", [2, 1]), "bad feature path: the first layer must sit at level 0 or 1"),
    (lambda a: a.__setitem__("max_disparity_px", 50), "max_disparity_px must be a positive multiple of 24"),
    (lambda a: a.pop("matching"), "missing 'matching'"),
])
def test_bad_architecture_files_name_the_file_and_the_problem(tmp_path, edit, message):
    arch = write_arch(tmp_path, edit)
    with pytest.raises(UserError, match=message) as err:
        main(["--arch", str(arch), "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert str(arch) in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path):
    (tmp_path / "arch.json").write_text("{not json")
    result = subprocess.run([sys.executable, "stereo/train.py", "--arch", str(tmp_path / "arch.json"),
                             "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "arch.json: not an architecture file (not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_prepared_data_and_bad_crop_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="nowhere"):
        main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    with pytest.raises(UserError, match="multiples of 24"):
        main(["--data", str(tmp_path / "nowhere"), "--set", "data.crop_height=100", "--out", str(tmp_path / "out")])
