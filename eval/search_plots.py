"""Pictures of a search (matplotlib, Agg): what alpha, beta and b did, from ``search_history.json``.

- ``search_alpha.png``: softmax(alpha) as a heatmap per edge (rows, labelled source -> node) and op
  (columns), for the feature and the matching net at the last epoch; colour is the departure from the
  uniform start (red above, blue below), numbers are the weights; the genotype's cells are boxed.
- ``search_beta.png``: the trellis of levels over layers for each net; every valid move is a line
  whose width and darkness follow its probability (softmax of beta over the valid moves of its source
  level), the decoded Viterbi path is drawn on top in red.
- ``search_b.png``: the surrogate sharpness b per LIF layer over epochs (layers that DGS moved; the
  others are counted in the title) and the training curves (weight/architecture loss, validation MDE).

    python eval/search_plots.py --history runs/search/search_history.json --out runs/search
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from common.atomic import atomic_path  # noqa: E402
from common.errors import UserError, run_cli  # noqa: E402
from common.reading import read_json
from models.topology import EDGES, MOVE_DELTA, MOVES, NUM_LEVELS, OPS, valid_moves  # noqa: E402

NETS = ("feature", "matching")
MAX_B_LINES = 12


def _source_name(source: int) -> str:
    return ("s0", "s1")[source] if source < 2 else f"n{source - 2}"


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_alpha(entry: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(1, len(NETS), figsize=(5.0 * len(NETS), 4.6), layout="constrained")
    uniform = 1.0 / len(OPS)
    # Colour = departure from the uniform start, on one symmetric scale for both nets: early in a
    # search the weights differ in the second decimal, which a 0..1 scale would hide.
    spread = max(0.01, *(abs(v - uniform) for net in NETS for row in entry[net]["alpha"] for v in row))
    for ax, net in zip(axes, NETS):
        weights = entry[net]["alpha"]
        image = ax.imshow([[v - uniform for v in row] for row in weights], cmap="RdBu_r", vmin=-spread,
                          vmax=spread, aspect="auto")
        for e, row in enumerate(weights):
            for o, value in enumerate(row):
                ax.text(o, e, f"{value:.3f}", ha="center", va="center", fontsize=8)
        for edge, op in entry[net]["genotype"]:
            ax.add_patch(Rectangle((op - 0.5, edge - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
        ax.set_xticks(range(len(OPS)), OPS, rotation=20)
        ax.set_yticks(range(len(EDGES)), [f"e{e}: {_source_name(src)}->n{node}" for e, (node, src) in enumerate(EDGES)])
        ax.set_title(f"{net} softmax(alpha), epoch {entry['epoch']}\n(red: decoded genotype)", fontsize=10)
    fig.colorbar(image, ax=axes, shrink=0.8, label=f"op weight - 1/{len(OPS)} (uniform)")
    _save(fig, path)


def plot_beta(entry: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(1, len(NETS), figsize=(5.2 * len(NETS), 3.8), layout="constrained")
    for ax, net in zip(axes, NETS):
        probs, decoded = entry[net]["beta"], entry[net]["path"]
        layers = len(probs)
        reachable = {0}
        for layer in range(layers):
            nxt = set()
            for source in sorted(reachable):
                for move in valid_moves(source, NUM_LEVELS):
                    target = source + MOVE_DELTA[MOVES[move]]
                    p = probs[layer][source][move]
                    ax.plot([layer, layer + 1], [source, target], color=plt.cm.Blues(0.25 + 0.75 * p),
                            linewidth=0.5 + 5 * p, zorder=1)
                    ax.text(layer + 0.3, source + 0.3 * (target - source), f"{p:.2f}", fontsize=7,
                            ha="center", va="bottom", color="dimgray")  # near the source: no overlaps
                    nxt.add(target)
            reachable = nxt
        route = [0, *decoded]
        ax.plot(range(layers + 1), route, color="red", linewidth=2.5, marker="o", zorder=3, label="Viterbi path")
        ax.set_xticks(range(layers + 1), ["stem", *[f"L{i}" for i in range(layers)]])
        ax.set_yticks(range(NUM_LEVELS), [f"{lvl}: 1/{3 * 2 ** lvl}" for lvl in range(NUM_LEVELS)])
        ax.set_ylim(NUM_LEVELS - 0.5, -0.5)
        ax.set_xlabel("layer")
        ax.set_ylabel("level (resolution)")
        ax.set_title(f"{net} move probabilities, epoch {entry['epoch']}\npath {decoded}", fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def plot_b_and_curves(history: list[dict[str, Any]], path: Path) -> None:
    fig, (ax_b, ax_loss) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    epochs = [entry["epoch"] for entry in history]
    names = sorted(history[-1]["lif_b"])
    series = {name: [entry["lif_b"].get(name) for entry in history] for name in names}
    moved = sorted((n for n in names if len(set(series[n])) > 1),
                   key=lambda n: -(max(series[n]) - min(series[n])))
    for name in moved[:MAX_B_LINES]:
        ax_b.plot(epochs, series[name], marker="o", label=name)
    still = len(names) - len(moved[:MAX_B_LINES])
    initial = sorted({values[-1] for n, values in series.items() if n not in moved})
    ax_b.set_title(f"b per LIF layer over epochs\n({still} layers unchanged at b in {initial})", fontsize=10)
    ax_b.set_xlabel("epoch (0 = initial)")
    ax_b.xaxis.get_major_locator().set_params(integer=True)
    ax_b.set_ylabel("surrogate sharpness b")
    ax_b.set_ylim(0.8, 6.2)
    if moved:
        ax_b.legend(fontsize=7)
    else:
        ax_b.text(0.5, 0.5, "no layer's b changed\n(DGS runs in the search with search.use_dgs: true)",
                  transform=ax_b.transAxes, ha="center", va="center", fontsize=9, color="dimgray")
    ax_b.set_xlim(epochs[0] - 0.2, epochs[-1] + 0.2)
    trained = [entry for entry in history if entry["epoch"] > 0]
    if trained:
        x = [entry["epoch"] for entry in trained]
        ax_loss.plot(x, [e["weight_loss"] for e in trained], marker="o", label="weight loss (half A)")
        arch = [(e["epoch"], e["arch_loss"]) for e in trained if e.get("arch_loss") is not None]
        if arch:
            ax_loss.plot(*zip(*arch), marker="s", label="architecture loss (half B)")
        ax_mde = ax_loss.twinx()
        ax_mde.plot(x, [e["val_mde_px"] for e in trained], color="black", linestyle="--", marker="^",
                    label="validation MDE (px)")
        ax_mde.set_ylabel("validation MDE (px)")
        handles = ax_loss.get_legend_handles_labels()[0] + ax_mde.get_legend_handles_labels()[0]
        ax_mde.legend(handles=handles, fontsize=8, loc="best")
    ax_loss.set_xlabel("epoch")
    ax_loss.xaxis.get_major_locator().set_params(integer=True)
    ax_loss.set_ylabel("smooth-L1 loss")
    ax_loss.set_title("search curves", fontsize=10)
    _save(fig, path)


def plot_search(history: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Write the three pictures of a search history into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    paths = [out_dir / "search_alpha.png", out_dir / "search_beta.png", out_dir / "search_b.png"]
    plot_alpha(history[-1], paths[0])
    plot_beta(history[-1], paths[1])
    plot_b_and_curves(history, paths[2])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=Path, default=Path("runs/search/search_history.json"),
                        help="search_history.json written by stereo/search.py")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: beside the history)")
    args = parser.parse_args(argv)
    payload = read_json(args.history, "a search history", missing="run python stereo/search.py first")
    try:
        history = payload["epochs"]
        if not history:
            raise ValueError("no epochs")
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{args.history}: not a search history ({err})") from None
    for path in plot_search(history, args.out or args.history.parent):
        print(path)
    return 0


if __name__ == "__main__":
    run_cli(main)
