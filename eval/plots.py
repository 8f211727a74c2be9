"""Figures of the evaluation: per-example panels, a summary grid, the energy bars, accuracy vs energy.

Every disparity image of one run shares one colour scale (0 .. the largest disparity of the data)
and every error map another (0 .. ERROR_MAX_PX), so pictures of different examples compare directly.
Figures have fixed pixel sizes (no tight bounding box) and a low dpi so the PNGs stay small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np

from common.atomic import atomic_path

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 80
PANEL_SIZE_PX = (1280, 240)  # width, height of one example's panel
ERROR_MAX_PX = 5.0
DISPARITY_CMAP = "magma"
ERROR_CMAP = "inferno"


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)


def _show(ax, image, title: str, cmap: str, vmin: float, vmax: float, label: str | None):
    handle = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    if label is not None:
        plt.colorbar(handle, ax=ax, fraction=0.035, pad=0.02).set_label(label, fontsize=8)
    return handle


def masked(image: np.ndarray, mask: np.ndarray) -> np.ma.MaskedArray:
    """Hide pixels outside the mask (drawn as the axes' background)."""
    return np.ma.masked_where(~mask, image)


def example_panel(path: Path, events_u8: np.ndarray, pred_px: np.ndarray, gt_px: np.ndarray, valid: np.ndarray,
                  disp_max_px: float, title: str) -> None:
    """Left events | predicted disparity | ground truth | |error| on valid ground truth."""
    width, height = PANEL_SIZE_PX
    fig, axes = plt.subplots(1, 4, figsize=(width / DPI, height / DPI))
    _show(axes[0], events_u8, "left events (count)", "gray", 0, 255, None)
    _show(axes[1], pred_px, "predicted disparity", DISPARITY_CMAP, 0, disp_max_px, "px")
    _show(axes[2], masked(gt_px, valid), "ground truth", DISPARITY_CMAP, 0, disp_max_px, "px")
    _show(axes[3], masked(np.abs(pred_px - gt_px), valid), "|error|", ERROR_CMAP, 0, ERROR_MAX_PX, "px")
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.97, bottom=0.03, top=0.8, wspace=0.15)
    _save(fig, path)


def summary_grid(path: Path, rows: Sequence[dict[str, object]], methods: dict[str, str], disp_max_px: float) -> None:
    """One row per example: events, ground truth, then each method's prediction (titles: label, dense MDE).

    ``methods`` maps each method key to its label.

    Each row dict holds ``events``, ``gt``, ``valid``, ``title`` and one prediction per method name.
    """
    columns = 2 + len(methods)
    fig, axes = plt.subplots(len(rows), columns, figsize=(2.6 * columns, 1.9 * len(rows) + 0.3), squeeze=False)
    for r, row in enumerate(rows):
        valid = row["valid"]
        _show(axes[r, 0], row["events"], f"{row['title']}\nleft events", "gray", 0, 255, None)
        _show(axes[r, 1], masked(row["gt"], valid), "ground truth", DISPARITY_CMAP, 0, disp_max_px, None)
        for c, (method, label) in enumerate(methods.items(), start=2):
            pred = row[method]
            mde = float(np.abs(pred - row["gt"])[valid].mean()) if valid.any() else float("nan")
            last = _show(axes[r, c], pred, f"{label} (MDE {mde:.2f} px)", DISPARITY_CMAP, 0, disp_max_px, None)
    fig.subplots_adjust(left=0.01, right=0.9, bottom=0.02, top=0.93, wspace=0.05, hspace=0.3)
    cax = fig.add_axes([0.92, 0.1, 0.015, 0.8])
    fig.colorbar(last, cax=cax).set_label("disparity (px)", fontsize=8)
    _save(fig, path)


def energy_bars(path: Path, snn_rows: Sequence[dict], ann_rows: Sequence[dict] | None) -> None:
    """Energy per layer (mJ per inference), SNN beside its ANN twin, log scale; silent layers get no bar."""
    names = [r["name"] for r in snn_rows]
    ann_by_name = {r["name"]: r["energy_mj"] for r in ann_rows or []}
    series = {"SNN": [r["energy_mj"] for r in snn_rows]}
    if ann_rows:
        series["ANN twin"] = [ann_by_name.get(n, 0.0) for n in names]
    y = np.arange(len(names))
    height = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(8, 0.22 * len(names) + 1.2))
    for k, (label, values) in enumerate(series.items()):
        shown = [v if v > 0 else np.nan for v in values]
        ax.barh(y + (k - (len(series) - 1) / 2) * height, shown, height, label=label)
    positive = [v for values in series.values() for v in values if v > 0]
    if positive:
        ax.set_xscale("log")
        ax.set_xlim(min(positive) / 3, max(positive) * 3)
    ax.set_yticks(y, names, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("energy per inference (mJ); no bar = no operation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


@dataclass
class TradeoffPoint:
    """One model on the accuracy-energy picture; ``energy_mj`` None for a method without an energy model."""

    label: str
    mde_px: float
    energy_mj: float | None
    kind: str  # snn | ann | sgbm


def accuracy_energy(path: Path, points: Sequence[TradeoffPoint], paper_energy_mj: float | None = None) -> None:
    """MDE against energy per inference (log x); SGBM, which has no energy model here, is a dashed line."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    style = {"snn": ("o", "tab:blue"), "ann": ("s", "tab:red")}
    for point in points:
        if point.energy_mj is None:
            ax.axhline(point.mde_px, color="tab:gray", linestyle="--", linewidth=1)
            ax.annotate(point.label, (0.02, point.mde_px), xycoords=("axes fraction", "data"), fontsize=8,
                        va="bottom", color="tab:gray")
            continue
        marker, colour = style.get(point.kind, ("^", "tab:green"))
        ax.scatter(point.energy_mj, point.mde_px, marker=marker, color=colour, s=40, zorder=3)
        ax.annotate(point.label, (point.energy_mj, point.mde_px), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if paper_energy_mj:
        ax.axvline(paper_energy_mj, color="tab:purple", linestyle=":", linewidth=1)
        ax.annotate(f"paper SNN {paper_energy_mj} mJ", (paper_energy_mj, 0.98), xycoords=("data", "axes fraction"),
                    fontsize=8, rotation=90, va="top", ha="right", color="tab:purple")
    ax.set_xscale("log")
    ax.set_xlabel("energy per inference at 260x346 (mJ, log)")
    ax.set_ylabel("mean disparity error (px)")
    ax.set_title("accuracy vs energy", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
