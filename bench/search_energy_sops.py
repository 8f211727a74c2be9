"""Does ``search.energy_penalty`` move the search towards fewer synaptic operations?

For each search run folder given: the decoded architecture, its count of skip ops, and the cell
synaptic operations per example (validation frames, 260 x 346) of the supernet with its searched
weights, mixed (alpha/beta) and in discrete mode on the decoded architecture (models/synops.py).

    python stereo/search.py --config configs/search_demo.yaml --out runs/search_energy_0 \
        --set data.max_train_examples=16 --set search.epochs=4 --set search.use_dgs=false \
        --set data.max_val_examples=1 --set search.energy_penalty=0        # and =200 into runs/search_energy_200
    python bench/search_energy_sops.py runs/search_energy_0 runs/search_energy_200
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from common.paths import ARCHITECTURE_NAME, DEFAULT_PREPARED_DIR, SEARCH_CHECKPOINT_NAME
from data_tools.dataset import StereoEventDataset
from models.arch import Architecture, load_architecture
from models.topology import OPS
from stereo.checkpoint import load_checkpoint
from stereo.config import config_from_dict
from stereo.searching import build_supernet


def at_filter_multiplier(arch: Architecture, fm: int) -> Architecture:
    return dataclasses.replace(arch, feature=dataclasses.replace(arch.feature, filter_multiplier=fm),
                               matching=dataclasses.replace(arch.matching, filter_multiplier=fm))


@torch.no_grad()
def cell_synops(net, items) -> float:
    total = 0.0
    for item in items:
        net(item["left"][None], item["right"][None])
        total += float(net.expected_synops())
    return total / len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="search output folders")
    parser.add_argument("--data", type=Path, default=DEFAULT_PREPARED_DIR)
    parser.add_argument("--examples", type=int, default=4, help="validation frames counted")
    args = parser.parse_args()
    val = StereoEventDataset(args.data, "val")
    items = [val[i] for i in range(min(args.examples, len(val)))]
    skip = OPS.index("skip_connect")
    for run in args.runs:
        ckpt = load_checkpoint(run / SEARCH_CHECKPOINT_NAME, search=True)
        cfg = config_from_dict(ckpt["config"])
        net = build_supernet(cfg, ckpt["in_channels"], ckpt["num_bins"])
        net.load_state_dict(ckpt["model_state"])
        net.eval().record_synops()
        arch = load_architecture(run / ARCHITECTURE_NAME)
        mixed = cell_synops(net, items)
        net.set_discrete(at_filter_multiplier(arch, cfg.search.filter_multiplier))
        decoded = cell_synops(net, items)
        skips = sum(op == skip for spec in (arch.feature, arch.matching) for _, op in spec.genotype)
        print(f"{run} (energy_penalty {cfg.search.energy_penalty:g}): feature path {arch.feature.path}, matching path "
              f"{arch.matching.path}, {skips}/12 skip edges; cell SOPs per example: mixed {mixed:.3e}, decoded {decoded:.3e}")


if __name__ == "__main__":
    main()
