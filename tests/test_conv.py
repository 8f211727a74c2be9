"""models.conv.Conv3d: the oneDNN route at batch 1 gives nn.Conv3d's values and gradients, and keeps its
state dict (old checkpoints load unchanged)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.conv import Conv3d, prefers_onednn


@pytest.mark.parametrize("kernel, padding, stride", [(3, 1, 1), (3, 1, 2), (1, 0, 1)])
def test_batch_one_matches_nn_conv3d_in_value_and_gradient(kernel, padding, stride):
    torch.manual_seed(0)
    reference = nn.Conv3d(4, 6, kernel, stride=stride, padding=padding)
    fast = Conv3d(4, 6, kernel, stride=stride, padding=padding)
    fast.load_state_dict(reference.state_dict())
    assert prefers_onednn(torch.zeros(1, 4, 5, 7, 9), fast) == (kernel > 1)
    assert not prefers_onednn(torch.zeros(2, 4, 5, 7, 9), fast)  # PyTorch already picks oneDNN there
    x = (torch.rand(1, 4, 5, 7, 9) < 0.3).float().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    y, y_ref = fast(x), reference(x_ref)
    assert torch.allclose(y, y_ref, atol=1e-5)
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    (y_ref * weights).sum().backward()
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-5)
    assert torch.allclose(fast.weight.grad, reference.weight.grad, atol=1e-4)
    assert torch.allclose(fast.bias.grad, reference.bias.grad, atol=1e-4)


def test_torch_compile_traces_it_and_leaves_the_choice_to_inductor():
    torch.manual_seed(0)
    conv = Conv3d(2, 3, 3, padding=1)
    x = torch.rand(1, 2, 4, 6, 6)
    with torch.no_grad():
        assert torch.allclose(torch.compile(conv, dynamic=False)(x), conv(x), atol=1e-5)


def test_op_counters_see_the_usual_convolution():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func)
            return func(*args, **(kwargs or {}))

    with Recorder() as recorder, torch.no_grad():
        Conv3d(2, 3, 3, padding=1)(torch.rand(1, 2, 4, 6, 6))
    assert torch.ops.aten.convolution.default in recorder.ops
