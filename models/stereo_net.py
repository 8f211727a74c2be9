"""The retrained spiking stereo network built from an architecture file (SPEC §5-§7).

left, right (B, T, C, H, W) event tensors
  -> both views folded into the batch (shared weights, separate neuron state), padded to a multiple of 24
  -> feature TrellisNet (2D, spikes at level 0 = 1/3 resolution) per time step
  -> cost volume over D = maxdisp/3 per time step: correlation (AND of left and shifted right spikes,
     binary) or concatenation, as the architecture file says
  -> matching TrellisNet (3D) -> mean over T of its fuse layer's spikes (or, with the "current" readout,
     of the fuse's conv + BN current) -> Conv3d to one cost channel (or to 3 sub-bin channels, one per
     1 px disparity of each 3 px step: ``disparity_subbins``)
  -> trilinear upsample to (maxdisp, H, W) -> softmin over disparity -> expectation -> crop back.

The ANN twin (``ann=True``) is the same architecture with ReLU in place of every LIF, run once (T = 1)
on the input summed over time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import UserError
from models.arch import Architecture
from models.conv import Conv3d
from models.cost_volume import build_cost_volume, cost_volume_channels
from models.neurons import V_THRESHOLD, MultiStepLIF, SequenceReLU, lif_modules
from models.regression import full_resolution_cost, interleave_subbins, soft_argmin_disparity
from models.topology import LEVEL_DOWNSAMPLE, PAD_MULTIPLE
from models.trellis import TrellisNet, genotype_edge_ops, path_transitions


def pad_to_multiple(x: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """Zero-pad the last two axes (H, W) at the bottom and right up to a multiple (zero = no events)."""
    height, width = x.shape[-2:]
    return F.pad(x, (0, -width % multiple, 0, -height % multiple))


def build_trellis(spec, dims: int, in_channels: int, ann: bool, shortcuts: bool,
                  spiking_output: bool = True) -> TrellisNet:
    """A retrained feature (2D) or matching (3D) net: the decoded path and genotype of ``spec``."""
    return TrellisNet(dims, in_channels, spec.filter_multiplier, spec.steps,
                      path_transitions(spec.path), genotype_edge_ops(spec.genotype), ann, shortcuts, spiking_output)


def threshold_scaled_batchnorm(model: nn.Module) -> None:
    """Start every BN weight at the firing threshold (tdBN's init, alpha = 1): membranes N(0, theta^2).

    Applied with membrane shortcuts (the two together took the shipped paths off the plateau).

    Why: at BN weight 1 each LIF layer multiplies the backward signal by about 2 (gamma^2 E[sg^2] /
    Var(spike), Dspike b = 3), 3.6e4-fold over the shipped paths; at the threshold 0.5 the gain is about
    1 (docs/learning.md). The ANN twin keeps PyTorch's init (ReLU nets are scale-free under BN).
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
            nn.init.constant_(module.weight, V_THRESHOLD)


class StereoNet(nn.Module):
    """The forward pass shared by the retrained network and the search supernet, around the feature and
    matching nets it is given: padding, the cost volume, the cost head and the soft-argmin."""

    def __init__(self, feature: TrellisNet, matching: TrellisNet, cost_volume: str, max_disparity_px: int,
                 ann: bool, membrane_shortcuts: bool, disparity_subbins: int = 1) -> None:
        super().__init__()
        self.ann = ann
        self.max_disp = max_disparity_px
        self.num_disp = max_disparity_px // LEVEL_DOWNSAMPLE[0]
        self.cost_volume = cost_volume
        self.feature = feature
        self.matching = matching
        self.disparity_subbins = disparity_subbins
        self.cost_head = Conv3d(matching.out_channels, disparity_subbins, 3, padding=1)
        if membrane_shortcuts and not ann:  # the residual recipe: shortcuts with threshold-scaled BN
            threshold_scaled_batchnorm(self)

    def forward(self, left: torch.Tensor, right: torch.Tensor, return_cost: bool = False,
                return_volume: bool = False) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """(B, T, C, H, W) left and right -> (B, H, W) disparity in pixels; with ``return_cost`` also the
        (B, maxdisp, H, W) upsampled cost it was regressed from (distillation matches its softmin), with
        ``return_volume`` also the cost volume's mean over T, (B, Cv, D, Hp/3, Wp/3) (volume supervision).

        Flags, not further methods, so that a DDP-wrapped network still goes through DDP's forward."""
        if left.shape != right.shape or left.dim() != 5:
            raise ValueError(f"expected two (B, T, C, H, W) tensors of one shape, got {tuple(left.shape)} and {tuple(right.shape)}")
        batch = left.shape[0]
        height, width = left.shape[-2:]
        views = torch.cat([left, right], dim=0)
        if self.ann:
            views = views.sum(dim=1, keepdim=True)
        x_seq = pad_to_multiple(views).transpose(0, 1)  # (T, 2B, C, Hp, Wp)
        feats = self.feature(x_seq)
        steps = feats.shape[0]
        feat_left, feat_right = feats[:, :batch], feats[:, batch:]
        volume = build_cost_volume(self.cost_volume, feat_left.flatten(0, 1), feat_right.flatten(0, 1),
                                   self.num_disp).unflatten(0, (steps, batch))  # (T, B, Cv, D, h, w)
        matched = self.matching(volume)  # (T, B, Cm, D, h, w)
        cost = interleave_subbins(self.cost_head(matched.mean(dim=0)))
        cost = full_resolution_cost(cost, self.max_disp, x_seq.shape[-2:], (height, width))
        disparity = soft_argmin_disparity(cost)
        extras = ([cost] if return_cost else []) + ([volume.mean(dim=0)] if return_volume else [])
        return (disparity, *extras) if extras else disparity


class SpikingStereoNet(StereoNet):
    """The retrained network of an architecture: its decoded paths and genotypes, its LIF b values."""

    def __init__(self, arch: Architecture, in_channels: int = 2, ann: bool = False) -> None:
        feature = build_trellis(arch.feature, 2, in_channels, ann, arch.membrane_shortcuts)
        matching = build_trellis(arch.matching, 3, cost_volume_channels(arch.cost_volume, feature.out_channels),
                                 ann, arch.membrane_shortcuts, spiking_output=arch.readout == "spikes")
        super().__init__(feature, matching, arch.cost_volume, arch.max_disparity_px, ann, arch.membrane_shortcuts,
                         arch.disparity_subbins)
        apply_lif_b(self, arch.lif_b)


def neuron_names(model: nn.Module) -> set[str]:
    """Names of the activation modules (LIF, or ReLU in the ANN twin) — the keys of ``lif_b``."""
    return {name for name, m in model.named_modules() if isinstance(m, (MultiStepLIF, SequenceReLU))}


def apply_lif_b(model: nn.Module, lif_b: dict[str, float]) -> None:
    """Set each named LIF's surrogate sharpness b; names that are no activation are a user error.

    The ANN twin has ReLUs at the same names and no b, so names are checked and nothing is set.
    """
    if unknown := sorted(set(lif_b) - neuron_names(model)):
        raise UserError(f"architecture lif_b names layer(s) the network does not have: {', '.join(unknown[:5])}"
                        f"{' ...' if len(unknown) > 5 else ''} (expected LIF module names such as feature.stem.0.neuron)")
    lifs = lif_modules(model)
    for name, b in lif_b.items():
        if name in lifs:
            lifs[name].b.fill_(float(b))


def current_lif_b(model: nn.Module) -> dict[str, float]:
    """Every LIF's current b by module name (what DGS moved), for architecture files and checkpoints."""
    return {name: round(float(m.b), 6) for name, m in lif_modules(model).items()}
