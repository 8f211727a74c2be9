"""From a coarse matching cost to a disparity map in pixels (SPEC §7).

The cost (one channel over D = maxdisp/3 disparities at 1/3 resolution, or S sub-bin channels that
:func:`interleave_subbins` lays out as S * D disparities of 1 px) is upsampled trilinearly to
(maxdisp, H, W) (along disparity only where it is still coarse), turned into a distribution with a softmin over disparity, and its expectation is the
sub-pixel disparity (soft argmin, as GC-Net/LEAStereo).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def interleave_subbins(cost: torch.Tensor) -> torch.Tensor:
    """(B, S, D, h, w) sub-bin costs -> (B, 1, D * S, h, w), sub-bin s of step k at disparity index k * S + s.

    With S = 3 each volume step of 3 px gets its own three 1 px costs, centred where trilinear
    upsampling (align_corners=False) puts the step's single cost, index 3k + 1.
    """
    batch, subbins, steps, height, width = cost.shape
    return cost.permute(0, 2, 1, 3, 4).reshape(batch, 1, steps * subbins, height, width)


def upsample_cost(cost: torch.Tensor, max_disp: int, height: int, width: int) -> torch.Tensor:
    """(B, 1, D, h, w) -> (B, max_disp, height, width) by trilinear interpolation."""
    return F.interpolate(cost, size=(max_disp, height, width), mode="trilinear", align_corners=False).squeeze(1)


def full_resolution_cost(cost: torch.Tensor, max_disp: int, padded: tuple[int, int],
                         frame: tuple[int, int]) -> torch.Tensor:
    """(B, 1, D, h, w) coarse cost of a padded frame -> (B, max_disp, H, W), upsampled to the padded size
    and cropped back to the frame inside the padding."""
    return upsample_cost(cost, max_disp, *padded)[..., : frame[0], : frame[1]]


def soft_argmin_disparity(cost: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) cost -> (B, H, W) expected disparity under softmin(cost) over D (index d = d px)."""
    prob = F.softmin(cost, dim=1)
    disparities = torch.arange(cost.shape[1], dtype=cost.dtype, device=cost.device)
    return torch.einsum("bdhw,d->bhw", prob, disparities)
