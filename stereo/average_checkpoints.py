"""Average the weights of several checkpoints of one run into one checkpoint (SWA afterwards).

    python stereo/train.py --set train.keep_epoch_checkpoints=6 --out runs/train   # keeps epochs/epoch_NNN.pt
    python stereo/average_checkpoints.py runs/train/epochs/*.pt --out runs/train/averaged.pt
    python eval/disparity.py --checkpoint runs/train/averaged.pt --split val

Floating tensors (weights, BN statistics) get equal weights; each LIF's b and every other field come
from the last checkpoint named. The result loads like best.pt everywhere (eval, infer, energy).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common.errors import run_cli
from stereo.averaging import average_checkpoints
from stereo.checkpoint import save_checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", type=Path, nargs="+", help="checkpoints of one run, e.g. RUN/epochs/*.pt")
    parser.add_argument("--out", type=Path, required=True, help="where to write the averaged checkpoint")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paths = list(dict.fromkeys(args.checkpoints))  # in the order given (shell globs sort), once each
    payload = average_checkpoints(paths)
    save_checkpoint(args.out, payload)
    print(f"averaged {len(paths)} checkpoint(s) (epochs {', '.join(map(str, payload['averaged_epochs']))}) "
          f"into {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
