"""Search the spiking feature and matching networks (SpikeDHS, SPEC §6-§7) on a prepared dataset.

Writes OUT/architecture.json (retrain it with stereo/train.py --arch OUT/architecture.json),
OUT/search_history.json, the pictures OUT/search_alpha.png, search_beta.png, search_b.png and
OUT/search_last.pt (for --resume).

    python stereo/search.py                                          # synthetic chain, configs/search_demo.yaml
    python stereo/search.py --config configs/search_mvsec.yaml --data data/mvsec_prepared --out runs/search_mvsec
    python stereo/search.py --resume                                 # continue runs/search from search_last.pt
    torchrun --nproc_per_node 2 stereo/search.py ...                 # DDP, one process per GPU (gloo on CPU)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common.errors import run_cli
from common.paths import DEFAULT_PREPARED_DIR, DEFAULT_SEARCH_DIR
from eval.search_plots import plot_search
from stereo.config import add_config_arguments, start_cli
from stereo.distributed import init_distributed, shutdown
from stereo.searching import run_search
from stereo.training import open_datasets

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "search_demo.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_PREPARED_DIR, help="prepared dataset directory")
    parser.add_argument("--out", type=Path, default=DEFAULT_SEARCH_DIR, help="output directory")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/search_last.pt")
    add_config_arguments(parser, default_config=DEFAULT_CONFIG)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg, _ = start_cli(args)  # the device of each process comes from torchrun's environment
    ctx = init_distributed(args.device)
    try:
        train_set, val_set = open_datasets(args.data, cfg, args.seed)
        run_search(cfg, train_set, val_set, args.out, ctx, resume=args.resume, seed=args.seed, draw=plot_search)
    finally:
        shutdown(ctx)
    return 0


if __name__ == "__main__":
    run_cli(main)
