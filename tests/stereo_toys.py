"""Small architectures and a synthetic stereo dataset for the network and training tests (not a test file).

The toy scene: a random right-camera event texture, and a left view in which each horizontal band is
that texture shifted by its own disparity (fronto-parallel planes at distinct depths):
left[y, x] = right[y, x - d(y)], valid where x >= d(y).
"""

from __future__ import annotations

import os
import socket

import torch
from torch.utils.data import Dataset

from models.arch import Architecture, NetSpec
from stereo.config import Config

TOY_DISPARITIES_PX = (4, 10, 16)
FEATURE_GENOTYPE = [[1, 1], [0, 0], [3, 2], [2, 1], [7, 1], [8, 0]]  # skip, b3 and b5 all present
MATCHING_GENOTYPE = [[0, 1], [1, 2], [4, 2], [3, 2], [8, 1], [6, 1]]


def toy_architecture(feature_path=(1, 0), matching_path=(0, 1), filter_multiplier: int = 2,
                     max_disparity_px: int = 24, lif_b: dict | None = None) -> Architecture:
    return Architecture(
        feature=NetSpec(list(feature_path), FEATURE_GENOTYPE, filter_multiplier, 3, 3),
        matching=NetSpec(list(matching_path), MATCHING_GENOTYPE, filter_multiplier, 3, 3),
        num_bins=2, max_disparity_px=max_disparity_px, lif_b=lif_b or {},
    )


def toy_pair(height: int, width: int, steps: int = 2, channels: int = 2, density: float = 0.3,
             disparities=TOY_DISPARITIES_PX, seed: int = 0) -> dict[str, torch.Tensor]:
    """One example: left/right (T, C, H, W) binary events, disp_px and valid (H, W)."""
    gen = torch.Generator().manual_seed(seed)
    right = (torch.rand(steps, channels, height, width, generator=gen) < density).float()
    left = torch.zeros_like(right)
    disp = torch.zeros(height, width)
    bands = torch.linspace(0, height, len(disparities) + 1).round().long()
    for d, top, bottom in zip(disparities, bands[:-1], bands[1:]):
        left[..., top:bottom, d:] = right[..., top:bottom, : width - d]
        disp[top:bottom] = float(d)
    columns = torch.arange(width).expand(height, width)
    valid = columns >= disp
    return {"left": left, "right": right, "disp_px": disp * valid, "valid": valid,
            "event_mask": left.sum((0, 1)) > 0}


class ToyStereoDataset(Dataset):
    """Items shaped like data_tools.dataset.StereoEventDataset's, from toy_pair with one seed per index."""

    num_bins = 2
    encoding = "binary"
    in_channels = 2
    focal_baseline_px_m = 19.941772

    def __init__(self, num_examples: int, height: int, width: int, seed: int = 0) -> None:
        self.items = [toy_pair(height, width, seed=seed + i) for i in range(num_examples)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return {**self.items[index], "sequence": "toy", "frame_index": index, "t_us": 50_000 * index}


@torch.no_grad()
def calibrate_batchnorm(net: torch.nn.Module, pair: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Set every BN's running statistics to exactly those of one training-mode pass, then switch to eval.

    Eval mode then computes what training mode computes on this example ("precise BN"). A fresh
    network's BN (mean 0, var 1) lets few spikes through deep layers, and a spiking net is so
    sensitive near threshold that even the unbiased-variance factor n/(n-1) flips spikes, so the
    variance is stored biased, as training mode normalises.
    """
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    counts: dict[torch.nn.Module, int] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args: counts.__setitem__(mod, args[0].numel() // args[0].shape[1]))
             for m in norms]
    for module in norms:
        module.reset_running_stats()
        module.momentum = None  # cumulative average: one pass gives exactly the batch statistics
    net.train()
    net(pair["left"][None], pair["right"][None])
    for hook in hooks:
        hook.remove()
    for module in norms:
        module.running_var.mul_((counts[module] - 1) / counts[module])
    return net.eval()


def toy_config(epochs: int = 2) -> Config:
    """Short toy training: DGS before every epoch after the first (one batch), rate penalty, precise BN, lr step at 1."""
    cfg = Config()
    cfg.train.epochs, cfg.train.batch_size, cfg.train.milestones, cfg.train.lr = epochs, 2, [1], 5e-3
    cfg.train.rate_penalty, cfg.train.precise_bn_batches = 0.1, 1
    cfg.dgs.every_epochs, cfg.dgs.max_batches = 1, 1
    return cfg


def free_port() -> int:
    """A free loopback port for a test's gloo rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def join_test_group(rank: int, world_size: int, port: int):
    """Inside an mp.spawn worker: the torchrun environment on loopback, one thread, then init_distributed."""
    from stereo.distributed import init_distributed

    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    return init_distributed("cpu")
