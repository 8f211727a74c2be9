"""Finding a DSEC download's files in the layouts users keep (Gehrig et al., RA-L 2021).

Two layouts are accepted, per split ``train`` or ``test``:
  ROOT/<split>/<sequence>/{events,disparity,calibration}/...           (one folder per sequence)
  ROOT/<split>_events/<sequence>/events/..., ROOT/<split>_disparity/<sequence>/disparity/...,
  ROOT/<split>_calibration/<sequence>/calibration/...                   (the zips unpacked side by side)
The benchmark's timestamp CSVs (``<sequence>.csv``) live in a folder of their own: ``--timestamps-dir``,
else ROOT/test_disparity_timestamps, ROOT/test or ROOT. When a file is missing, every path searched is named.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError

SIDES = ("left", "right")
TIMESTAMPS_FOLDER = "test_disparity_timestamps"
SYNTHETIC_DSEC_KIND = "synthetic_dsec"  # the kind in the manifest of make_synthetic.py --layout dsec


@dataclass
class DsecSequenceFiles:
    """Every file of one sequence; ``disparity_dir`` and ``timestamps`` for ``train``, ``benchmark_csv`` for ``test``
    (role ``raw``: events and calibration only, for inference)."""

    sequence: str
    role: str
    events: dict[str, Path]
    rectify_maps: dict[str, Path]
    calibration: Path
    disparity_dir: Path | None = None
    timestamps: Path | None = None
    benchmark_csv: Path | None = None


def _part_roots(root: Path, role: str, part: str) -> list[Path]:
    """Folders that may hold ``<sequence>/<part>/``: the per-sequence layout first, then the unpacked zip."""
    return [root / role, root / f"{role}_{part}"]


def _find(relative: str, roots: list[Path], sequence: str) -> Path:
    candidates = [r / sequence / relative for r in roots]
    for path in candidates:
        if path.exists():
            return path
    raise UserError(f"DSEC sequence '{sequence}': {Path(relative).name} not found; searched: "
                    + ", ".join(str(c) for c in candidates))


def list_sequences(root: Path, role: str) -> list[str]:
    """Sequence names of a split: folders holding ``events/left/events.h5`` in either layout, sorted."""
    found = set()
    for folder in _part_roots(root, role, "events"):
        if folder.is_dir():
            found |= {p.name for p in folder.iterdir() if (p / "events" / "left" / "events.h5").is_file()}
    return sorted(found)


def timestamps_dirs(root: Path, timestamps_dir: Path | None) -> list[Path]:
    return [timestamps_dir] if timestamps_dir is not None else [root / TIMESTAMPS_FOLDER, root / "test", root]


def find_dsec_sequence(root: Path, sequence: str, role: str, timestamps_dir: Path | None = None) -> DsecSequenceFiles:
    """Locate one sequence's files (UserError listing the searched paths when one is missing)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--dsec-root {root}: directory not found")
    events_roots = _part_roots(root, role, "events")
    files = DsecSequenceFiles(
        sequence, role,
        events={side: _find(f"events/{side}/events.h5", events_roots, sequence) for side in SIDES},
        rectify_maps={side: _find(f"events/{side}/rectify_map.h5", events_roots, sequence) for side in SIDES},
        calibration=_find("calibration/cam_to_cam.yaml", _part_roots(root, role, "calibration"), sequence),
    )
    if role == "train":
        files.disparity_dir = _find("disparity/event", _part_roots(root, role, "disparity"), sequence)
        files.timestamps = _find("disparity/timestamps.txt", _part_roots(root, role, "disparity"), sequence)
    else:
        candidates = [folder / f"{sequence}.csv" for folder in timestamps_dirs(root, timestamps_dir)]
        files.benchmark_csv = next((c for c in candidates if c.is_file()), None)
        if files.benchmark_csv is None:
            raise UserError(f"DSEC test sequence '{sequence}': {sequence}.csv (benchmark timestamps) not found; "
                            "searched: " + ", ".join(str(c) for c in candidates) + " (pass --timestamps-dir)")
    return files


def sequence_folder_files(folder: Path) -> DsecSequenceFiles:
    """A single DSEC sequence folder (``events/{left,right}/``, ``calibration/``), e.g. for inference."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--dsec-sequence {folder}: directory not found")
    roots = [folder.parent]
    return DsecSequenceFiles(
        folder.name, "raw",
        events={side: _find(f"events/{side}/events.h5", roots, folder.name) for side in SIDES},
        rectify_maps={side: _find(f"events/{side}/rectify_map.h5", roots, folder.name) for side in SIDES},
        calibration=_find("calibration/cam_to_cam.yaml", roots, folder.name),
    )
