"""Average the weights of several checkpoints of one run into one checkpoint (SWA afterwards).

    python stereo/train.py --set train.keep_epoch_checkpoints=6 --out runs/train   # keeps epochs/epoch_NNN.pt
    python stereo/average_checkpoints.py runs/train/epochs/*.pt --out runs/train/averaged.pt
    python eval/disparity.py --checkpoint runs/train/averaged.pt --split val
    python stereo/average_checkpoints.py            # every kept epoch of runs/train -> runs/train/averaged.pt

Floating tensors (weights, BN statistics) get equal weights; each LIF's b and every other field come
from the last checkpoint named. The result loads like best.pt everywhere (eval, infer, energy).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common.errors import UserError, run_cli
from common.paths import DEFAULT_TRAIN_DIR, EPOCH_CHECKPOINT_DIR
from stereo.averaging import average_checkpoints
from stereo.checkpoint import kept_epoch_checkpoints, save_checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", type=Path, nargs="*",
                        help=f"checkpoints of one run, e.g. RUN/epochs/*.pt (default: {DEFAULT_TRAIN_DIR}/{EPOCH_CHECKPOINT_DIR}/*.pt)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the averaged checkpoint (default: averaged.pt in the run folder)")
    return parser


def default_out(last: Path) -> Path:
    """RUN/averaged.pt for checkpoints in RUN/epochs/, else averaged.pt beside the last one."""
    folder = last.parent.parent if last.parent.name == EPOCH_CHECKPOINT_DIR else last.parent
    return folder / "averaged.pt"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    kept = DEFAULT_TRAIN_DIR / EPOCH_CHECKPOINT_DIR
    paths = list(dict.fromkeys(args.checkpoints)) or list(kept_epoch_checkpoints(kept).values())  # given order, once each
    if not paths:
        raise UserError(f"{kept}: no epoch checkpoints to average (train with --set train.keep_epoch_checkpoints=N, "
                        "or name checkpoints)")
    args.out = args.out or default_out(paths[-1])
    payload = average_checkpoints(paths)
    save_checkpoint(args.out, payload)
    print(f"averaged {len(paths)} checkpoint(s) (epochs {', '.join(map(str, payload['averaged_epochs']))}) "
          f"into {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
