"""What every prepare tool shares: the up-to-date check, the free-space check and the atomic folder swap.

A prepared folder is built in a temporary sibling and renamed onto ``--out`` only when complete, so a
killed or failed run leaves the previous dataset intact; a re-run on unchanged input is a no-op.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from common.atomic import remove_stale_temporaries, temporary_name, write_json_atomic
from common.errors import UserError
from data_tools.constants import DEFAULT_NUM_BINS, WINDOW_MS
from data_tools.prepared import MANIFEST_NAME, read_manifest
from data_tools.voxel import check_encoding

# Prepared bytes per raw event, measured on the synthetic recordings (about 7 bytes an event with Blosc)
# with a margin: an HDF5 write that hits a full disk can crash the process, so space is checked first.
BYTES_PER_EVENT = 10


def add_output_arguments(parser: argparse.ArgumentParser, default_out: Path, window_help: str) -> None:
    """The options every prepare tool shares: output folder, window and the manifest's voxel defaults."""
    parser.add_argument("--out", type=Path, default=default_out, help="prepared dataset folder")
    parser.add_argument("--window-ms", type=int, default=WINDOW_MS, help=window_help)
    parser.add_argument("--num-bins", type=int, default=DEFAULT_NUM_BINS, help="default time bins T (manifest)")
    parser.add_argument("--encoding", default="binary", help="default encoding: binary, count or signed (manifest)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the output is up to date")


def check_output_options(window_ms: int, num_bins: int, encoding: str) -> None:
    """UserErrors for the shared options, before any input is read."""
    check_encoding(encoding)
    if num_bins < 1:
        raise UserError(f"--num-bins {num_bins}: expected at least 1")
    if window_ms < 1:
        raise UserError(f"--window-ms {window_ms}: expected at least 1")


def fingerprint(paths: list[Path]) -> dict[str, list[int]]:
    """Size and modification time of every input file: the manifest's record of what it was made from."""
    return {str(p.resolve()): [p.stat().st_size, p.stat().st_mtime_ns] for p in paths}


def existing_manifest(out: Path) -> dict | None:
    """The manifest already in ``out``; None when ``out`` is absent or an empty folder."""
    if not out.exists():
        return None
    if not (out / MANIFEST_NAME).is_file():
        if out.is_dir() and not any(out.iterdir()):
            return None
        raise UserError(f"--out {out}: exists and is not a prepared dataset (no {MANIFEST_NAME}); choose another folder")
    return read_manifest(out)


def reuse_if_up_to_date(out: Path, source: dict, num_bins: int, encoding: str, force: bool) -> dict | None:
    """The existing manifest when it was made from the same source (recording the new defaults), else None."""
    existing = existing_manifest(out)
    if existing is None or existing["source"] != source or force:
        return None
    if (existing["num_bins"], existing["encoding"]) != (num_bins, encoding):
        existing.update(num_bins=num_bins, encoding=encoding)
        write_json_atomic(out / MANIFEST_NAME, existing)
        print(f"{out}: up to date; default num_bins={num_bins}, encoding={encoding} recorded")
    else:
        print(f"{out}: up to date (use --force to rebuild)")
    return existing


def check_free_space(out: Path, num_events: int, num_frames: int, height: int, width: int) -> None:
    """A UserError naming the folder when the prepared dataset would not fit on its disk."""
    need = num_events * BYTES_PER_EVENT + num_frames * 2 * height * width * 4
    folder = next(p for p in (out, *out.parents) if p.exists())
    free = shutil.disk_usage(folder).free
    if free < need:
        raise UserError(f"disk full at {folder}: preparing needs about {need / 2**20:.0f} MiB, "
                        f"{free / 2**20:.0f} MiB are free")


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace ``out`` by the finished folder ``tmp`` with renames (readers never see a mix)."""
    old = temporary_name(out, ".old")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def write_prepared(out: Path, fill: Callable[[Path], dict]) -> dict:
    """Build a prepared folder in a temporary sibling: ``fill(tmp)`` writes the sequence files and returns
    the manifest, written last; the finished folder then replaces ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".tmp", ".old"):  # what a killed earlier run left
        remove_stale_temporaries(out.parent, out.name, suffix)
    tmp = temporary_name(out)
    tmp.mkdir()
    try:
        manifest = fill(tmp)
        write_json_atomic(tmp / MANIFEST_NAME, manifest)
        _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def report_range(manifest: dict, default_max_px: int) -> None:
    """Print the disparity range found in the ground truth and what it asks of a network."""
    found = manifest.get("disparity_range_px")
    if found is None:
        print("note: no valid ground-truth disparity in the prepared sequences")
        return
    print(f"disparity in the ground truth: {found[0]:.2f} .. {found[1]:.2f} px; a network needs a maximum disparity "
          f"of at least {manifest['max_disparity_in_data_px']} px (default {default_max_px})")
