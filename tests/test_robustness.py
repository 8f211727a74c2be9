"""Shared mechanisms that keep bad situations to one line: OS errors, stale temporaries, strict JSON, config ranges."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from common.atomic import atomic_path, remove_stale_temporaries, write_json_atomic
from common.errors import UserError, run_cli
from stereo import checkpoint
from stereo.config import load_config


def dead_pid() -> int:
    """The id of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("code, words", [
    (errno.ENOSPC, "disk full at /data/out/last.pt"),
    (errno.ENOTDIR, "/data/out/last.pt: a part of this path is a file, not a folder"),
    (errno.EEXIST, "/data/out/last.pt: exists and is not a folder"),
])
def test_run_cli_turns_os_errors_about_paths_into_one_line_and_exit_2(capsys, code, words):
    def main(argv):
        raise OSError(code, os.strerror(code), "/data/out/last.pt")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"error: {words}" + (" (free some space and run again; earlier outputs are intact)" if code == errno.ENOSPC else "") + "\n"


def test_run_cli_lets_other_os_errors_through():
    def main(argv):
        raise OSError(errno.EIO, "I/O error", "/dev/sda")
    with pytest.raises(OSError):
        run_cli(main, [])


def test_a_full_disk_while_saving_a_checkpoint_is_a_user_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    """Fault injection: torch's writer fails as it does on ENOSPC; the previous last.pt stays intact."""
    path = tmp_path / "last.pt"
    checkpoint.save_checkpoint(path, {"epoch": 1})

    def full_disk(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"PK partial")
        raise RuntimeError("[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file data/0: file write failed")
    monkeypatch.setattr(torch, "save", full_disk)
    monkeypatch.setattr(checkpoint, "free_bytes", lambda folder: 1024)
    with pytest.raises(UserError, match=f"disk full at {path}"):
        checkpoint.save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left behind


def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead, live = dead_pid(), os.getppid()
    stale = tmp_path / f".last.pt.{dead}.abcd.tmp"
    alive = tmp_path / f".last.pt.{live}.efgh.tmp"
    stale_folder = tmp_path / f".prepared.{dead}.0123.tmp"
    other = tmp_path / ".last.pt.notapid.tmp"
    for path in (stale, alive, other):
        path.write_text("x")
    stale_folder.mkdir()
    (stale_folder / "seq.hdf5").write_text("x")
    with atomic_path(tmp_path / "last.pt") as tmp:
        assert f".last.pt.{os.getpid()}." in tmp.name  # our own temporary carries our process id
        tmp.write_text("new")
    assert not stale.exists() and alive.exists() and other.exists()
    assert remove_stale_temporaries(tmp_path, "prepared") == [stale_folder] and not stale_folder.exists()


def test_json_outputs_are_strict_nan_becomes_null(tmp_path):
    write_json_atomic(tmp_path / "metrics.json", {"mde_px": float("nan"), "rows": [1.0, float("inf")], "n": 3})
    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict constant {c}")) == {
        "mde_px": None, "rows": [1.0, None], "n": 3}


@pytest.mark.parametrize("override, words", [
    ("train.milestones=[1,", "not valid YAML"),
    ("train.batch_size=0", "'train.batch_size': must be at least 1, got 0"),
    ("train.epochs=-1", "'train.epochs': must be at least 1, got -1"),
    ("train.lr=0", "'train.lr': must be greater than 0"),
    ("data.encoding=spikes", "'data.encoding': must be one of binary, count, signed"),
    ("data.augment=[vflip,hflip]", "'data.augment': unknown augmentation hflip (known: vflip, polarity)"),
])
def test_bad_config_values_are_refused_when_set(override, words):
    with pytest.raises(UserError, match=re.escape(words)):
        load_config(None, [override])


def test_a_bad_value_in_a_yaml_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  batch_size: 0\n")
    with pytest.raises(UserError, match=f"{path}: 'train.batch_size': must be at least 1"):
        load_config(path)


def test_prepare_refuses_to_start_when_the_disk_is_too_small(tmp_path, monkeypatch):
    """Checked before any HDF5 write (a full disk inside HDF5 can crash the process): nothing is written."""
    from data_tools import make_synthetic, prepare_mvsec, prepared_folder

    raw = tmp_path / "raw"
    make_synthetic.main(["--out", str(raw), "--sequences", "3", "--seconds", "0.6", "--seed", "0"])
    usage = prepared_folder.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(prepared_folder.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(UserError, match=f"disk full at {tmp_path}: preparing needs about"):
        prepare_mvsec.prepare(raw, out=tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists() and [p.name for p in tmp_path.iterdir()] == ["raw"]
