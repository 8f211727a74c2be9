"""Multi-step LIF neurons with the Dspike surrogate gradient (SPEC §5).

Neuron model (the paper's code): per time step u <- u + I; o = H(u - theta) with a strict
Heaviside (fires on u > theta); u <- lambda * u * (1 - o), theta = 0.5, lambda = 0.2. The
reset path carries no gradient by default (``detach_reset=True``); ``False`` gives the paper's.

Dspike surrogate with sharpness b: dO/du = b (1 - tanh^2(b (u - theta))) / (2 tanh(b / 2)) on
|u - theta| < 0.5, zero elsewhere. It is the derivative of the smooth step
tanh(b (u - theta)) / (2 tanh(b / 2)) + 1/2, and integrates to 1 over its support.

Layout: every layer works on sequences (T, B, ...). Convolution and BN hold no membrane
state, so they run once on all steps folded into the batch; only the membrane recursion
loops over T. Each call starts from rest: no state survives between calls.
"""

from __future__ import annotations

import torch
from torch import nn

V_THRESHOLD = 0.5
DECAY = 0.2
DEFAULT_B = 3.0


class DSpikeFunction(torch.autograd.Function):
    """Heaviside forward, Dspike surrogate backward; input is u - theta."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, b)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, b = ctx.saved_tensors
        return grad_out * dspike_grad(x, b), None


def dspike_grad(x: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
    """The Dspike surrogate derivative at x = u - theta."""
    b = torch.as_tensor(b, dtype=x.dtype, device=x.device)
    inside = (x.abs() < 0.5).to(x.dtype)
    return inside * b * (1 - torch.tanh(b * x) ** 2) / (2 * torch.tanh(b / 2))


def dspike_primitive(x: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
    """The smooth function whose derivative is the surrogate (for tests and the non-spiking mode)."""
    b = torch.as_tensor(b, dtype=x.dtype, device=x.device)
    inner = torch.tanh(b * x.clamp(-0.5, 0.5)) / (2 * torch.tanh(b / 2)) + 0.5
    return inner


def dspike(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spike (0/1) of x = u - theta with the Dspike surrogate gradient of sharpness b."""
    return DSpikeFunction.apply(x, b)


def lif_multistep(
    x_seq: torch.Tensor,
    b: torch.Tensor,
    v_threshold: float = V_THRESHOLD,
    decay: float = DECAY,
    detach_reset: bool = True,
    v_init: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure LIF recursion over the first axis: (T, ...) inputs -> ((T, ...) spikes, last membrane)."""
    v = torch.zeros_like(x_seq[0]) if v_init is None else v_init
    spikes = []
    for x in x_seq:
        v = v + x
        spike = dspike(v - v_threshold, b)
        spikes.append(spike)
        reset = spike.detach() if detach_reset else spike
        v = decay * v * (1 - reset)
    return torch.stack(spikes), v


class MultiStepLIF(nn.Module):
    """LIF layer over (T, B, ...) sequences; its surrogate sharpness b is a buffer (in the state dict)."""

    def __init__(self, b: float = DEFAULT_B, v_threshold: float = V_THRESHOLD, decay: float = DECAY,
                 detach_reset: bool = True) -> None:
        super().__init__()
        self.register_buffer("b", torch.tensor(float(b)))
        self.v_threshold = v_threshold
        self.decay = decay
        self.detach_reset = detach_reset

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        spikes, _ = lif_multistep(x_seq, self.b, self.v_threshold, self.decay, self.detach_reset)
        return spikes

    def extra_repr(self) -> str:
        return f"b={float(self.b):.3g}, v_threshold={self.v_threshold}, decay={self.decay}, detach_reset={self.detach_reset}"


class SequenceReLU(nn.ReLU):
    """The ANN twin's activation in place of a LIF: elementwise, so (T, B, ...) layout passes through."""


def make_activation(ann: bool, b: float = DEFAULT_B) -> nn.Module:
    """LIF for the SNN, ReLU for its ANN twin."""
    return SequenceReLU() if ann else MultiStepLIF(b=b)


class ConvBNLIF(nn.Module):
    """conv + BN (applied to all T steps folded into the batch) feeding a multi-step LIF; 2D or 3D.

    ``membrane_input`` exposes conv+BN alone so that DGS can mix candidate copies of this block.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None, dims: int = 2, b: float = DEFAULT_B, ann: bool = False) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        padding = kernel_size // 2 if padding is None else padding
        self.conv = conv(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = norm(out_channels)
        self.neuron = make_activation(ann, b)

    def membrane_input(self, x_seq: torch.Tensor) -> torch.Tensor:
        """BN(conv(x)) for every step: (T, B, C, ...) -> (T, B, C_out, ...)."""
        steps, batch = x_seq.shape[:2]
        y = self.bn(self.conv(x_seq.flatten(0, 1)))
        return y.unflatten(0, (steps, batch))

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.neuron(self.membrane_input(x_seq))


def lif_modules(model: nn.Module) -> dict[str, MultiStepLIF]:
    """All LIF layers of a model by qualified name (for b read-out, firing rates, DGS)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, MultiStepLIF)}
