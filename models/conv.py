"""A Conv3d that PyTorch's CPU backend choice does not slow down at batch 1.

PyTorch picks oneDNN (mkldnn) or its native kernels per call. For a 3D convolution with batch 1 and
N x C x D x H <= 20480 its heuristic (ConvParams::use_mkldnn, "for some case, native is faster")
picks the native ``slow_conv3d``, which on this project's 3D layers is 9-12x slower than oneDNN
(a 16-channel 3x3x3 conv on 8 x 44 x 60: 29 ms against 3.1 ms, one thread). The ANN twin at
inference (batch 1, T = 1) hit that path in most of its matching net; the SNN, whose T steps are
folded into the batch, did not. This class sends such calls to oneDNN explicitly (differentiable,
same result within float32 rounding); 1x1x1 kernels keep the native path, which is faster for them.
Under torch.compile and under a TorchDispatchMode (the energy report's op counters) the standard
path runs, so that those see the usual ``aten.convolution``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils._python_dispatch import is_in_torch_dispatch_mode


def prefers_onednn(input: torch.Tensor, conv: nn.Conv3d) -> bool:
    """True where PyTorch would choose the native slow_conv3d although oneDNN is faster."""
    return (not torch.compiler.is_compiling()  # Inductor makes its own choice (and cannot trace this op)
            and not is_in_torch_dispatch_mode()  # op counters (eval/opcount.py) must see aten.convolution
            and input.device.type == "cpu" and input.dtype == torch.float32 and input.dim() == 5
            and input.shape[0] == 1 and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple)
            and any(k > 1 for k in conv.kernel_size) and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled)


class Conv3d(nn.Conv3d):
    """nn.Conv3d (same parameters and state dict) with batch-1 CPU calls sent to oneDNN."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if prefers_onednn(input, self):
            return torch.mkldnn_convolution(input.contiguous(), weight.contiguous(), bias, self.padding,
                                            self.stride, self.dilation, self.groups)
        return super()._conv_forward(input, weight, bias)
