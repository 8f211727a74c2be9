"""Energy per layer and per inference from operation counts (SPEC §9): SOPs x E_AC + MACs x E_MAC."""

from __future__ import annotations

import csv
from pathlib import Path

from common.atomic import atomic_path
from eval.opcount import OpCounts
from models.synops import PJ_TO_MJ

PAPER_ENERGY_MJ = 6.7
PAPER_RATIO = 26.0
CSV_FIELDS = ("name", "kind", "input_rate", "synops", "macs", "energy_mj")


def energy_rows(counts: OpCounts, e_ac_pj: float, e_mac_pj: float) -> list[dict[str, object]]:
    """Per-layer rows, every count and energy per inference (mean over the counted inferences)."""
    per = max(counts.num_inferences, 1)
    rows = []
    for layer in counts.layers:
        synops, macs = layer.synops / per, layer.macs / per
        rows.append({
            "name": layer.name,
            "kind": layer.kind,
            "input_rate": layer.input_rate if layer.kind in ("SOP", "SOP+MAC") else None,
            "synops": synops,
            "macs": macs,
            "energy_mj": (synops * e_ac_pj + macs * e_mac_pj) * PJ_TO_MJ,
        })
    return rows


def totals(rows: list[dict[str, object]]) -> dict[str, float]:
    """Per-inference totals of a table of energy rows."""
    return {
        "synops": float(sum(r["synops"] for r in rows)),
        "macs": float(sum(r["macs"] for r in rows)),
        "energy_mj": float(sum(r["energy_mj"] for r in rows)),
    }


def write_rows_csv(path: Path, rows_by_network: dict[str, list[dict[str, object]]]) -> None:
    """One CSV of per-layer rows, a ``network`` column telling the SNN's rows from the twin's."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=("network", *CSV_FIELDS))
        writer.writeheader()
        for network, rows in rows_by_network.items():
            for row in rows:
                writer.writerow({"network": network, **{k: row[k] for k in CSV_FIELDS}})


def format_table(rows: list[dict[str, object]], title: str) -> str:
    """A fixed-width text table: name, kind, firing rate, SOPs or MACs, mJ."""
    lines = [title, f"{'layer':<44} {'kind':<7} {'rate':>6} {'SOPs':>12} {'MACs':>12} {'mJ':>9}"]
    for r in rows:
        rate = "-" if r["input_rate"] is None else f"{100 * r['input_rate']:.1f}%"
        lines.append(f"{r['name']:<44} {r['kind']:<7} {rate:>6} {r['synops']:>12.4g} {r['macs']:>12.4g} {r['energy_mj']:>9.4f}")
    t = totals(rows)
    lines.append(f"{'total':<44} {'':<7} {'':>6} {t['synops']:>12.4g} {t['macs']:>12.4g} {t['energy_mj']:>9.4f}")
    return "\n".join(lines)
