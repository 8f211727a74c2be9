"""Architecture files: the versioned JSON that search writes and training reads (SPEC §6).

{
  "format": "spikedhs-stereo-architecture", "version": 2,
  "num_bins": 5, "max_disparity_px": 48, "cost_volume": "correlation",   # or "concat"
  "membrane_shortcuts": true,   # currents along edges and across cells (models/cells.py)
  "readout": "spikes",          # or "current": what the cost head reads of the matching net (below)
  "disparity_subbins": 1,       # or 3: costs the head predicts per volume disparity (below)
  "feature":  {"path": [1, 0], "genotype": [[edge, op], ... 6 rows], "filter_multiplier": 8,
               "block_multiplier": 3, "steps": 3},
  "matching": {... same keys ...},
  "lif_b": {"feature.stem.0.neuron": 3.0, ...},   # per-layer surrogate sharpness (DGS result)
  "source": "free text: where it came from"
}

Genotype rows are [edge index 0-8, op index into topology.OPS], two rows per node in node order.
The loader says exactly what is wrong with a bad file.

``readout`` (optional, default "spikes"): the matching net's last layer (the 1x1 fuse conv + BN) either
fires (the cost head reads its spikes, averaged over T) or hands its current to the cost head. With
"current", the fuse conv still reads binary spikes (synaptic operations) and the fuse and the cost head
are two linear maps in a row: together, one linear readout of the last cells' spikes (the head is the
one non-spiking layer either way; the authors' classifier reads its last layer's membrane likewise).

``disparity_subbins`` (optional, default 1): the cost volume steps disparity by 3 px (one level-0 pixel),
and with 1 the head predicts one cost per step, interpolated linearly over disparity to 1 px; with 3 the
head predicts the three 1 px disparities of each step itself (models/regression.py). Only the head's
output channels change: the volume and the matching net stay as they are.

Version 2 (cells whose edges carry currents, SPEC §6) replaced version 1 (edges that spiked). A
version 1 file is converted on load: path and genotype mean the same cells; the ``lif_b`` entries of
edge LIFs, which no longer exist, are dropped; its cost volume was concatenation, without shortcuts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.atomic import write_json_atomic
from common.errors import UserError
from common.reading import read_json
from models.cost_volume import COST_VOLUMES
from models.topology import (
    EDGES,
    LEVEL_DOWNSAMPLE,
    NUM_EDGES,
    NUM_LEVELS,
    NUM_NODES,
    OPS,
    PAD_MULTIPLE,
    path_error,
)

ARCH_FORMAT = "spikedhs-stereo-architecture"
ARCH_VERSION = 2
DEFAULT_COST_VOLUME = "correlation"
READOUTS = ("spikes", "current")
DEFAULT_READOUT = READOUTS[0]
DISPARITY_SUBBINS = (1, LEVEL_DOWNSAMPLE[0])  # per volume step: interpolated, or one cost per full-res pixel


@dataclass
class NetSpec:
    """One searched network (feature or matching): its layer path and its cell genotype."""

    path: list[int]
    genotype: list[list[int]]
    filter_multiplier: int = 8
    block_multiplier: int = 3
    steps: int = NUM_NODES


@dataclass
class Architecture:
    feature: NetSpec
    matching: NetSpec
    num_bins: int = 5
    max_disparity_px: int = 48
    lif_b: dict[str, float] = field(default_factory=dict)
    source: str = ""
    cost_volume: str = DEFAULT_COST_VOLUME
    membrane_shortcuts: bool = True  # currents carried along edges and across cells (models/cells.py)
    readout: str = DEFAULT_READOUT  # what the cost head reads: the matching fuse's spikes or its current
    disparity_subbins: int = 1  # costs the head predicts per cost-volume disparity step

    def to_dict(self) -> dict[str, Any]:
        return {"format": ARCH_FORMAT, "version": ARCH_VERSION, **asdict(self)}

    def save(self, path: Path | str) -> None:
        write_json_atomic(path, self.to_dict())


def genotype_error(genotype: Any) -> str | None:
    """None for a valid genotype, else what is wrong with it."""
    if not isinstance(genotype, list) or len(genotype) != 2 * NUM_NODES:
        return f"expected {2 * NUM_NODES} rows [edge, op] (two per node), got {genotype!r}"
    for row_index, row in enumerate(genotype):
        node = row_index // 2
        if not (isinstance(row, list) and len(row) == 2 and all(isinstance(v, int) for v in row)):
            return f"row {row_index} must be [edge, op] integers, got {row!r}"
        edge, op = row
        if not 0 <= edge < NUM_EDGES:
            return f"row {row_index}: edge {edge} out of range 0..{NUM_EDGES - 1}"
        if not 0 <= op < len(OPS):
            return f"row {row_index}: unknown op {op} (ops are {', '.join(f'{i}={n}' for i, n in enumerate(OPS))})"
        if EDGES[edge][0] != node:
            return f"row {row_index}: edge {edge} feeds node {EDGES[edge][0]}, but rows {2 * node}-{2 * node + 1} belong to node {node}"
    for node in range(NUM_NODES):
        if genotype[2 * node][0] == genotype[2 * node + 1][0]:
            return f"node {node} uses edge {genotype[2 * node][0]} twice"
    return None


def _net_from_dict(payload: Any, name: str, where: str) -> NetSpec:
    if not isinstance(payload, dict):
        raise UserError(f"{where}: '{name}' must be an object with path and genotype")
    unknown = set(payload) - {"path", "genotype", "filter_multiplier", "block_multiplier", "steps"}
    if unknown:
        raise UserError(f"{where}: unknown key(s) {sorted(unknown)} in '{name}'")
    for key in ("path", "genotype"):
        if key not in payload:
            raise UserError(f"{where}: '{name}' has no '{key}'")
    spec = NetSpec(**payload)
    if (problem := path_error(spec.path, NUM_LEVELS)) is not None:
        raise UserError(f"{where}: bad {name} path: {problem}")
    if (problem := genotype_error(spec.genotype)) is not None:
        raise UserError(f"{where}: bad {name} genotype: {problem}")
    for key in ("filter_multiplier", "block_multiplier", "steps"):
        value = getattr(spec, key)
        if not isinstance(value, int) or value < 1:
            raise UserError(f"{where}: {name}.{key} must be a positive integer, got {value!r}")
    if spec.steps != NUM_NODES or spec.block_multiplier != spec.steps:
        raise UserError(
            f"{where}: {name}.steps and {name}.block_multiplier must both be {NUM_NODES} "
            f"(the cell output concatenates its {NUM_NODES} nodes)"
        )
    return spec


def architecture_from_dict(payload: Any, where: str = "architecture") -> Architecture:
    """Validate plain data (a file or a checkpoint's embedded copy) into an Architecture."""
    if not isinstance(payload, dict):
        raise UserError(f"{where}: expected a JSON object")
    if payload.get("format") != ARCH_FORMAT:
        raise UserError(f"{where}: not a SpikeDHS-Stereo architecture file (format must be '{ARCH_FORMAT}')")
    if payload.get("version") == 1:
        payload = _upgrade_version_1(payload)
    if payload.get("version") != ARCH_VERSION:
        raise UserError(f"{where}: unsupported architecture version {payload.get('version')!r} (expected {ARCH_VERSION})")
    known = {"format", "version", "feature", "matching", "num_bins", "max_disparity_px", "lif_b", "source",
             "cost_volume", "membrane_shortcuts", "readout", "disparity_subbins"}
    if unknown := set(payload) - known:
        raise UserError(f"{where}: unknown key(s) {sorted(unknown)}")
    for key in ("feature", "matching"):
        if key not in payload:
            raise UserError(f"{where}: missing '{key}'")
    arch = Architecture(
        feature=_net_from_dict(payload["feature"], "feature", where),
        matching=_net_from_dict(payload["matching"], "matching", where),
        num_bins=payload.get("num_bins", 5),
        max_disparity_px=payload.get("max_disparity_px", 48),
        lif_b=payload.get("lif_b", {}),
        source=payload.get("source", ""),
        cost_volume=payload.get("cost_volume", DEFAULT_COST_VOLUME),
        membrane_shortcuts=payload.get("membrane_shortcuts", True),
        readout=payload.get("readout", DEFAULT_READOUT),
        disparity_subbins=payload.get("disparity_subbins", 1),
    )
    if not isinstance(arch.membrane_shortcuts, bool):
        raise UserError(f"{where}: membrane_shortcuts must be true or false, got {arch.membrane_shortcuts!r}")
    if arch.readout not in READOUTS:
        raise UserError(f"{where}: readout must be one of {', '.join(READOUTS)}, got {arch.readout!r}")
    if arch.disparity_subbins not in DISPARITY_SUBBINS or isinstance(arch.disparity_subbins, bool):
        raise UserError(f"{where}: disparity_subbins must be one of {', '.join(map(str, DISPARITY_SUBBINS))}, "
                        f"got {arch.disparity_subbins!r}")
    if arch.cost_volume not in COST_VOLUMES:
        raise UserError(f"{where}: cost_volume must be one of {', '.join(COST_VOLUMES)}, got {arch.cost_volume!r}")
    if not isinstance(arch.num_bins, int) or arch.num_bins < 1:
        raise UserError(f"{where}: num_bins must be a positive integer, got {arch.num_bins!r}")
    if not isinstance(arch.max_disparity_px, int) or arch.max_disparity_px <= 0 or arch.max_disparity_px % PAD_MULTIPLE:
        raise UserError(f"{where}: max_disparity_px must be a positive multiple of {PAD_MULTIPLE}, got {arch.max_disparity_px!r}")
    if not isinstance(arch.lif_b, dict) or not all(
        isinstance(v, (int, float)) and 1.0 <= v <= 6.0 for v in arch.lif_b.values()
    ):
        raise UserError(f"{where}: lif_b must map layer names to numbers in [1, 6]")
    return arch


def _upgrade_version_1(payload: dict[str, Any]) -> dict[str, Any]:
    """A version 1 file as version 2: same cells, edge LIFs' b dropped, concatenation volume."""
    lif_b = payload.get("lif_b", {})
    if isinstance(lif_b, dict):
        lif_b = {name: b for name, b in lif_b.items() if ".edges." not in name}
    return {**payload, "version": ARCH_VERSION, "lif_b": lif_b, "cost_volume": "concat", "membrane_shortcuts": False}


def load_architecture(path: Path | str) -> Architecture:
    """Read and validate an architecture file; every problem is a one-line UserError."""
    payload = read_json(path, "an architecture file", missing="architecture file not found")
    return architecture_from_dict(payload, str(path))
