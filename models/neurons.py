"""Multi-step LIF neurons with the Dspike surrogate gradient (SPEC §5).

Neuron model (the paper's code): per time step u <- u + I; o = H(u - theta) with a strict
Heaviside (fires on u > theta); u <- lambda * u * (1 - o), theta = 0.5, lambda = 0.2. The
reset path carries no gradient by default (``detach_reset=True``); ``False`` gives the paper's.
spikingjelly's ``LIFNode(tau=1.25, decay_input=False, v_threshold=0.5, v_reset=0.0)`` has the
same dynamics except that it fires on u >= theta.

Dspike surrogate with sharpness b: dO/du = b (1 - tanh^2(b (u - theta))) / (2 tanh(b / 2)) on
|u - theta| < 0.5, zero elsewhere. It is the derivative of the smooth step
tanh(b (u - theta)) / (2 tanh(b / 2)) + 1/2, and integrates to 1 over its support. Small b is
a wide, flat gradient; large b a narrow, peaked one. :class:`DSpike` wraps it as a spikingjelly
surrogate (for spikingjelly and snntorch neurons); our own layer uses the fused path below.

Layout: every layer works on sequences (T, B, ...). Convolution and BN hold no membrane
state, so they run once on all steps folded into the batch; only the membrane recursion
loops over T. Each call starts from rest: no state survives between calls (streaming callers
pass ``v_init`` explicitly to :meth:`MultiStepLIF.forward_stateful`).

Speed: :func:`lif_multistep` is one autograd node for the whole sequence. The forward loop
saves only the pre-reset membrane h_t (three ops a step); the backward recomputes the surrogate
from h_t and runs the reverse recursion dL/dh_t = a_t + c_t * dL/dh_{t+1}, one step at a time so
its temporaries stay in cache. :func:`lif_multistep_reference` is the plain step-by-step autograd loop it
is tested against; ``compiled=True`` runs that definition through ``torch.compile`` (Inductor fuses
the whole loop and its backward): faster per call, but seconds of compiling per new input shape.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from spikingjelly.activation_based import surrogate
from torch import nn

from models.conv import Conv3d

V_THRESHOLD = 0.5
DECAY = 0.2
DEFAULT_B = 3.0


def dspike_grad(x: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
    """The Dspike surrogate derivative at x = u - theta (no autograd through it)."""
    b = torch.as_tensor(b, dtype=x.dtype, device=x.device)
    scale = b / (2 * torch.tanh(b / 2))
    t = torch.tanh_(b * x)
    sg = t.mul_(t).mul_(-scale).add_(scale)  # scale * (1 - tanh^2), in place: one pass each
    return sg.mul_(x.abs().lt_(0.5))


def dspike_primitive(x: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
    """The smooth function whose derivative is the surrogate (for tests and the non-spiking mode)."""
    b = torch.as_tensor(b, dtype=x.dtype, device=x.device)
    return torch.tanh(b * x.clamp(-0.5, 0.5)) / (2 * torch.tanh(b / 2)) + 0.5


class DSpikeFunction(torch.autograd.Function):
    """Heaviside forward, Dspike surrogate backward; input is u - theta, b a float or tensor."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.b = b
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_out * dspike_grad(x, ctx.b), None


def dspike(x: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
    """Spike (0/1) of x = u - theta with the Dspike surrogate gradient of sharpness b."""
    return DSpikeFunction.apply(x, b)


class DSpike(surrogate.SurrogateFunctionBase):
    """Dspike as a spikingjelly surrogate (``DSpike(b=3.0)``; ``.b`` is settable; also any callable x -> spike)."""

    def __init__(self, b: float = DEFAULT_B, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, b=b)

    @staticmethod
    def spiking_function(x: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
        return dspike(x, b)

    @staticmethod
    def primitive_function(x: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
        return dspike_primitive(x, b)


def lif_multistep_reference(
    x_seq: torch.Tensor,
    b: torch.Tensor | float,
    v_threshold: float = V_THRESHOLD,
    decay: float = DECAY,
    detach_reset: bool = True,
    v_init: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain step-by-step LIF with autograd through every op: the definition the fast path is tested against."""
    v = torch.zeros_like(x_seq[0]) if v_init is None else v_init
    spikes = []
    for x in x_seq:
        v = v + x
        spike = dspike(v - v_threshold, b)
        spikes.append(spike)
        reset = spike.detach() if detach_reset else spike
        v = decay * v * (1 - reset)
    return torch.stack(spikes), v


def _forward_loop(x_seq: torch.Tensor, v: torch.Tensor, v_threshold: float,
                  decay: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Membrane recursion without autograd: -> (pre-reset membranes h, spikes, last membrane).

    Three ops a step: h_t = x_t + lambda * r_{t-1}, o_t = [h_t > theta], r_t = h_t - h_t * o_t
    (lambda is folded into the next step's add; r is the membrane after reset, before decay).
    """
    h_seq = torch.empty_like(x_seq)
    spikes = torch.empty_like(x_seq)
    rest = v
    for t in range(x_seq.shape[0]):
        torch.add(x_seq[t], rest, alpha=decay if t else 1.0, out=h_seq[t])
        torch.gt(h_seq[t], v_threshold, out=spikes[t])
        rest = torch.addcmul(h_seq[t], h_seq[t], spikes[t], value=-1.0)
    return h_seq, spikes, rest.mul_(decay)


def _backward_loop(h_seq: torch.Tensor, grad_spikes: torch.Tensor, grad_v: torch.Tensor, b: torch.Tensor,
                   v_threshold: float, decay: float, detach_reset: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Reverse recursion dL/dh_t = g_s,t * sg_t + lambda * k_t * dL/dh_{t+1}, with dL/dx_t = dL/dh_t.

    k_t = 1 - o_t with the reset detached, 1 - o_t - h_t * sg_t through it (the paper's code). Step by
    step, so the temporaries are one step's size and stay in cache.
    """
    grad_x = torch.empty_like(h_seq)
    g = grad_v
    for t in range(h_seq.shape[0] - 1, -1, -1):
        x = h_seq[t] - v_threshold
        sg = dspike_grad(x, b)
        keep = x.le_(0.0)  # 1 - o_t, in place of x
        if not detach_reset:
            keep.addcmul_(h_seq[t], sg, value=-1.0)
        g = torch.mul(sg, grad_spikes[t], out=grad_x[t]).addcmul_(g, keep, value=decay)
    return grad_x, g


_COMPILED: dict[str, Callable] = {}


def _compiled_reference() -> Callable:
    """The step-by-step definition through ``torch.compile`` (built on first use: compiling takes seconds)."""
    if "reference" not in _COMPILED:
        _COMPILED["reference"] = torch.compile(lif_multistep_reference, dynamic=False)
    return _COMPILED["reference"]


class _LIFSequence(torch.autograd.Function):
    """The whole LIF sequence as one autograd node (saves h only; b is not differentiated)."""

    @staticmethod
    def forward(ctx, x_seq, v_init, b, v_threshold, decay, detach_reset):
        v0 = torch.zeros_like(x_seq[0]) if v_init is None else v_init.to(x_seq.dtype)
        h_seq, spikes, v_last = _forward_loop(x_seq, v0, v_threshold, decay)
        ctx.save_for_backward(h_seq, torch.as_tensor(b, dtype=x_seq.dtype, device=x_seq.device))
        ctx.settings = (v_threshold, decay, detach_reset, v_init is not None)
        return spikes, v_last

    @staticmethod
    def backward(ctx, grad_spikes, grad_v):
        h_seq, b = ctx.saved_tensors
        v_threshold, decay, detach_reset, has_v_init = ctx.settings
        grad_x, grad_v0 = _backward_loop(h_seq, grad_spikes.contiguous(), grad_v, b, v_threshold, decay,
                                         detach_reset)
        return grad_x, (grad_v0.clone() if has_v_init else None), None, None, None, None


def lif_multistep(
    x_seq: torch.Tensor,
    b: torch.Tensor | float,
    v_threshold: float = V_THRESHOLD,
    decay: float = DECAY,
    detach_reset: bool = True,
    v_init: torch.Tensor | None = None,
    compiled: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LIF recursion over the first axis: (T, ...) inputs -> ((T, ...) spikes, last membrane).

    Starts from rest unless ``v_init`` (shape ``x_seq.shape[1:]``) carries a membrane over.
    ``compiled=True`` runs the step-by-step definition through ``torch.compile`` instead.
    """
    if x_seq.dim() < 1 or x_seq.shape[0] == 0:
        raise ValueError(f"lif_multistep expects a (T, ...) sequence with T >= 1, got shape {tuple(x_seq.shape)}")
    if compiled:
        return _compiled_reference()(x_seq, b, v_threshold, decay, detach_reset, v_init)
    return _LIFSequence.apply(x_seq.contiguous(), v_init, b, float(v_threshold), float(decay), bool(detach_reset))


class MultiStepLIF(nn.Module):
    """LIF layer over (T, B, ...) sequences; its surrogate sharpness b is a buffer (in the state dict).

    ``compiled=True`` runs the membrane loops through ``torch.compile`` (see :func:`set_lif_compile`).
    """

    def __init__(self, b: float = DEFAULT_B, v_threshold: float = V_THRESHOLD, decay: float = DECAY,
                 detach_reset: bool = True, compiled: bool = False) -> None:
        super().__init__()
        self.register_buffer("b", torch.tensor(float(b)))
        self.v_threshold = v_threshold
        self.decay = decay
        self.detach_reset = detach_reset
        self.compiled = compiled

    def forward(self, x_seq: torch.Tensor, b: torch.Tensor | float | None = None) -> torch.Tensor:
        """Spikes of the sequence; ``b`` overrides the buffer for this call (a supernet node's mixed b)."""
        spikes, _ = self.forward_stateful(x_seq, b=b)
        return spikes

    def forward_stateful(self, x_seq: torch.Tensor, v_init: torch.Tensor | None = None,
                         b: torch.Tensor | float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Spikes and the last membrane, starting from ``v_init`` (rest if None): for streaming callers."""
        sharpness = self.b if b is None else b
        return lif_multistep(x_seq, sharpness, self.v_threshold, self.decay, self.detach_reset, v_init,
                             self.compiled)

    def extra_repr(self) -> str:
        return (f"b={float(self.b):.3g}, v_threshold={self.v_threshold}, decay={self.decay}, "
                f"detach_reset={self.detach_reset}")


class SequenceReLU(nn.ReLU):
    """The ANN twin's activation in place of a LIF: elementwise, so (T, B, ...) layout passes through."""

    def forward(self, x_seq: torch.Tensor, b: torch.Tensor | float | None = None) -> torch.Tensor:
        """``b`` is accepted (and ignored) so that the twin's nodes are called like the SNN's."""
        return super().forward(x_seq)


def make_activation(ann: bool, b: float = DEFAULT_B) -> nn.Module:
    """LIF for the SNN, ReLU for its ANN twin."""
    return SequenceReLU() if ann else MultiStepLIF(b=b)


class ConvBN(nn.Module):
    """conv + BN applied to all T steps folded into the batch: the current a cell edge hands its node.

    Input (T, B, C, H, W) for ``dims=2`` or (T, B, C, D, H, W) for ``dims=3``; output the same layout.
    ``b`` is the surrogate sharpness this op brings to the LIF it feeds (SPEC §6: snn_b3 / snn_b5).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None, dims: int = 2, b: float = DEFAULT_B) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"ConvBN dims must be 2 or 3, got {dims}")
        conv = nn.Conv2d if dims == 2 else Conv3d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        padding = kernel_size // 2 if padding is None else padding
        self.conv = conv(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = norm(out_channels)
        self.b = float(b)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """BN(conv(x)) for every step: (T, B, C, ...) -> (T, B, C_out, ...)."""
        steps, batch = x_seq.shape[:2]
        y = self.bn(self.conv(x_seq.flatten(0, 1)))
        return y.unflatten(0, (steps, batch))


class CurrentToSpikes:
    """Mixin for layers made of ``membrane_input(x)`` (a current) and ``.neuron`` (a LIF)."""

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.neuron(self.membrane_input(x_seq))

    def forward_current(self, x_seq: torch.Tensor, carried: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(spikes, current): the current is the layer's own plus ``carried`` (a membrane shortcut), if given."""
        current = self.membrane_input(x_seq)
        if carried is not None:
            current = current + carried
        return self.neuron(current), current


class ConvBNLIF(CurrentToSpikes, ConvBN):
    """conv + BN feeding a multi-step LIF (ReLU in the ANN twin); 2D or 3D.

    ``membrane_input`` exposes conv+BN alone so that DGS can mix candidate copies of this block.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None, dims: int = 2, b: float = DEFAULT_B, ann: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dims, b)
        self.neuron = make_activation(ann, b)

    def membrane_input(self, x_seq: torch.Tensor) -> torch.Tensor:
        """BN(conv(x)) for every step: (T, B, C, ...) -> (T, B, C_out, ...)."""
        return ConvBN.forward(self, x_seq)


def lif_modules(model: nn.Module) -> dict[str, MultiStepLIF]:
    """All LIF layers of a model by qualified name (for b read-out, firing rates, DGS)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, MultiStepLIF)}


def set_lif_compile(model: nn.Module, enabled: bool = True) -> int:
    """Switch the torch.compile path of every LIF layer in ``model``; returns how many were switched."""
    layers = lif_modules(model)
    for layer in layers.values():
        layer.compiled = enabled
    return len(layers)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model
