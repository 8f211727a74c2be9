"""Write-to-temporary-then-rename, so that no reader ever sees a half-written output.

Temporary names carry the writer's process id (``.<name>.<pid>.<random>.tmp``), so that a later
writer can remove what a killed one left behind, and never what a live one is still writing.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def remove_stale_temporaries(folder: Path, stem: str, suffix: str = ".tmp") -> list[Path]:
    """Remove ``.<stem>.<pid>.*<suffix>`` files and folders in ``folder`` whose writer process is gone."""
    pattern = re.compile(rf"^\.{re.escape(stem)}\.(\d+)\..*{re.escape(suffix)}$")
    removed = []
    for entry in folder.iterdir() if folder.is_dir() else []:
        match = pattern.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not process_alive(int(match.group(1))):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def temporary_name(final: Path, suffix: str = ".tmp") -> Path:
    """A fresh temporary path beside ``final`` named by this process (for folders and special writers)."""
    return final.with_name(f".{final.name}.{os.getpid()}.{os.urandom(4).hex()}{suffix}")


@contextlib.contextmanager
def atomic_path(final: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final.parent, final.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    tmp_path.chmod(0o666 & ~umask)  # mkstemp creates 0600; give the output ordinary permissions
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_output(final: Path, folder: bool = False) -> Iterator[Path]:
    """A temporary file (same extension: writers pick the format by it) or folder beside ``final``,
    renamed onto it only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final.parent, final.name, final.suffix)  # what a killed earlier run left
    tmp = temporary_name(final, suffix=final.suffix)  # keeps the extension: writers pick the format by it
    if folder:
        tmp.mkdir(exist_ok=True)
    try:
        yield tmp
        if folder and final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp)
        elif tmp.exists():
            tmp.unlink()


def json_safe(value: Any) -> Any:
    """NaN and infinities as null: strict JSON parsers reject the bare ``NaN`` Python writes."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json_atomic(path: Path | str, payload: object) -> None:
    """Dump strict JSON (indented; NaN as null) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n")
