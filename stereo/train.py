"""Retrain a searched architecture (SNN, or its ANN twin with --ann) on a prepared dataset.

    python stereo/train.py                                   # synthetic chain, configs/demo.yaml
    python stereo/train.py --arch configs/arch/spikedhs_mvsec.json --config configs/mvsec_split1.yaml --out runs/paper_arch
    python stereo/train.py --resume                          # continue runs/train from last.pt
    python stereo/train.py --init weights/snn_synthetic_bench.pt --set train.rate_penalty=2 --out runs/rate2  # fine-tune
    python stereo/train.py --diagnose                        # which LIF layers are silent, saturated, gradient-starved
    torchrun --nproc_per_node 2 stereo/train.py ...          # DDP, one process per GPU (gloo on CPU)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common.errors import run_cli
from common.paths import (
    DEFAULT_PREPARED_DIR,
    DEFAULT_TRAIN_ANN_DIR,
    DEFAULT_TRAIN_DIR,
    default_architecture,
)
from models.arch import load_architecture
from stereo.config import add_config_arguments, start_cli
from stereo.distributed import init_distributed, shutdown
from stereo.training import diagnose, open_datasets, train

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=Path, default=None,
                        help="architecture JSON (default: runs/search/architecture.json if present, else the shipped MVSEC one)")
    parser.add_argument("--data", type=Path, default=DEFAULT_PREPARED_DIR, help="prepared dataset directory")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output directory (default {DEFAULT_TRAIN_DIR}, or {DEFAULT_TRAIN_ANN_DIR} with --ann)")
    parser.add_argument("--ann", action="store_true", help="train the ANN twin (ReLU, T = 1 on the summed input)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt (architecture from the checkpoint)")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this checkpoint's weights and architecture (fine-tuning; fresh optimiser)")
    parser.add_argument("--diagnose", action="store_true",
                        help="print a one-batch health report (firing rate, surrogate window, gradient per LIF layer) and exit")
    add_config_arguments(parser, default_config=DEFAULT_CONFIG)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg, _ = start_cli(args)  # the device of each process comes from torchrun's environment
    out_dir = args.out or (DEFAULT_TRAIN_ANN_DIR if args.ann else DEFAULT_TRAIN_DIR)
    arch = load_architecture(args.arch or default_architecture())
    ctx = init_distributed(args.device)
    try:
        train_set, val_set = open_datasets(args.data, cfg, args.seed)
        if args.diagnose:
            print(diagnose(cfg, arch, train_set, ctx.device, args.seed))
            return 0
        train(cfg, arch, train_set, val_set, out_dir, ctx, ann=args.ann, resume=args.resume, seed=args.seed,
              init=args.init)
    finally:
        shutdown(ctx)
    return 0


if __name__ == "__main__":
    run_cli(main)
