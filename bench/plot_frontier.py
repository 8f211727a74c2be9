"""Draw the accuracy-energy frontier (docs/energy_frontier.png) from its table (docs/energy_frontier.csv).

    python bench/plot_frontier.py [--csv docs/energy_frontier.csv] [--out docs/energy_frontier.png]

The table is written by hand from the runs it lists (each row names the command that made its
checkpoint); this script only draws it: test MDE against SOP-model energy per inference, each SNN
point numbered by its row (as in the README's table), the twin as a point, SGBM (no energy model) as
a horizontal line, and the goal's corner: 20x less than the twin, within 10 % of the unpenalised SNN.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common.atomic import atomic_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=ROOT / "docs" / "energy_frontier.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "energy_frontier.png")
    args = parser.parse_args()
    rows = list(csv.DictReader(args.csv.open()))
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    twin = next(r for r in rows if r["point"].startswith("ANN"))
    for number, row in enumerate(rows, 1):
        if not row["energy_sop_mj"]:
            ax.axhline(float(row["test_mde_px"]), color="grey", ls="--", lw=1, label=f"{row['point']} (no energy model)")
            continue
        x, y = float(row["energy_sop_mj"]), float(row["test_mde_px"])
        is_twin = row is twin
        ax.scatter(x, y, marker="s" if is_twin else "o", color="tab:orange" if is_twin else "tab:blue", zorder=3)
        label = row["point"] if is_twin else f"{number}: T={row['T']}"
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.axvline(float(twin["energy_sop_mj"]) / 20, color="tab:green", ls=":", lw=1, label="twin / 20")
    ax.set_xscale("log")
    base = next(r for r in rows if r["point"] == "SNN benchmark")
    ax.axhline(1.1 * float(base["test_mde_px"]), color="tab:green", ls="-.", lw=1, label="unpenalised SNN + 10 %")
    ticks = [1.5, 2, 3, 4, 6, 10, 20, 40]
    ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("energy per inference, SOP model (mJ, log scale)")
    ax.set_ylabel("test MDE (px)")
    ax.set_title("Accuracy-energy frontier, synthetic benchmark (64 test frames)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, format="png")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
