"""The spiking core against its definitions: surrogate vs its primitive, fused LIF vs step loop, spikingjelly, snntorch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.neurons import (
    DECAY,
    V_THRESHOLD,
    ConvBNLIF,
    DSpike,
    MultiStepLIF,
    SequenceReLU,
    dspike,
    dspike_grad,
    dspike_primitive,
    lif_modules,
    lif_multistep,
    lif_multistep_reference,
    make_activation,
    set_lif_compile,
)

B_VALUES = [1.0, 2.0, 3.0, 5.0]


def _inputs(shape, seed=0, dtype=torch.float32) -> torch.Tensor:
    """Continuous random membrane inputs around the threshold: exact ties at theta have probability ~0."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen, dtype=dtype) * 0.6 + 0.25).requires_grad_()


@pytest.mark.parametrize("b", B_VALUES)
def test_surrogate_is_derivative_of_primitive(b):
    x = torch.linspace(-0.9, 0.9, 181, dtype=torch.float64)
    x = x[(x.abs() - 0.5).abs() > 1e-3]  # away from the kinks at the support's edges
    eps = 1e-6
    numeric = (dspike_primitive(x + eps, b) - dspike_primitive(x - eps, b)) / (2 * eps)
    torch.testing.assert_close(dspike_grad(x, b), numeric, rtol=1e-6, atol=1e-8)
    # and autograd through the spike function uses exactly that derivative
    xg = x.clone().requires_grad_()
    dspike(xg, torch.tensor(b, dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(xg.grad, numeric, rtol=1e-6, atol=1e-8)
    # hand-computed value at the threshold: b / (2 tanh(b/2))
    assert float(dspike_grad(torch.zeros(1, dtype=torch.float64), b)) == pytest.approx(b / (2 * torch.tanh(torch.tensor(b / 2)).item()))


@pytest.mark.parametrize("b", B_VALUES)
def test_surrogate_integrates_to_one_and_vanishes_outside(b):
    x = torch.linspace(-0.5, 0.5, 20001, dtype=torch.float64)
    assert float(torch.trapezoid(dspike_grad(x[1:-1], b), x[1:-1])) == pytest.approx(1.0, abs=1e-3)
    outside = torch.tensor([-2.0, -0.5, -0.51, 0.5, 0.7, 3.0], dtype=torch.float64)
    assert torch.count_nonzero(dspike_grad(outside, b)) == 0


def test_spike_forward_is_strict_heaviside():
    x = torch.tensor([-1.0, -1e-7, 0.0, 1e-7, 2.0])
    assert dspike(x, 3.0).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]


def test_spikingjelly_surrogate_subclass_has_settable_b():
    sg = DSpike(b=2.0)
    x = torch.tensor([-0.2, 0.1, 0.3], requires_grad=True)
    out = sg(x)
    assert out.tolist() == [0.0, 1.0, 1.0]
    out.sum().backward()
    torch.testing.assert_close(x.grad, dspike_grad(x.detach(), 2.0))
    sg.b = 5.0
    x.grad = None
    sg(x).sum().backward()
    torch.testing.assert_close(x.grad, dspike_grad(x.detach(), 5.0))
    sg.set_spiking_mode(False)
    torch.testing.assert_close(sg(x.detach()), dspike_primitive(x.detach(), 5.0))


def _grads(fn, x, seed=1):
    """Spikes, last membrane and d(random linear loss)/dx of a LIF implementation."""
    spikes, v_last = fn(x)
    gen = torch.Generator().manual_seed(seed)
    weights = torch.randn(spikes.shape, generator=gen, dtype=x.dtype)
    loss = (spikes * weights).sum() + 0.3 * v_last.sum()
    (grad,) = torch.autograd.grad(loss, x)
    return spikes.detach(), v_last.detach(), grad


@pytest.mark.parametrize("detach_reset", [True, False])
@pytest.mark.parametrize("b", [1.5, 3.0, 5.0])
def test_fused_lif_equals_step_loop(detach_reset, b):
    x = _inputs((8, 3, 4, 5, 6), seed=int(b * 10))
    ref = _grads(lambda x: lif_multistep_reference(x, b, detach_reset=detach_reset), x)
    fused = _grads(lambda x: lif_multistep(x, torch.tensor(b), detach_reset=detach_reset), x)
    assert torch.equal(ref[0], fused[0])
    assert 0.05 < float(ref[0].mean()) < 0.95  # a real mix of spikes and silence
    torch.testing.assert_close(fused[1], ref[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(fused[2], ref[2], rtol=0, atol=1e-5)
    assert float(ref[2].abs().max()) > 0.1  # the gradient is not trivially zero


def test_fused_lif_carries_state_like_the_loop():
    x = _inputs((5, 2, 7), seed=3)
    v0 = (torch.rand(2, 7, generator=torch.Generator().manual_seed(4)) * 0.4).requires_grad_()
    s_ref, v_ref = lif_multistep_reference(x, 3.0, v_init=v0)
    g_ref = torch.autograd.grad((s_ref * 1.7).sum() + v_ref.sum(), (x, v0))
    s, v = lif_multistep(x, 3.0, v_init=v0)
    g = torch.autograd.grad((s * 1.7).sum() + v.sum(), (x, v0))
    assert torch.equal(s, s_ref)
    for a, r in zip(g, g_ref):
        torch.testing.assert_close(a, r, rtol=0, atol=1e-5)
    # streaming: two halves with the state carried over equal one call on the whole sequence
    layer = MultiStepLIF()
    s1, v1 = layer.forward_stateful(x[:2].detach())
    s2, _ = layer.forward_stateful(x[2:].detach(), v1)
    assert torch.equal(torch.cat([s1, s2]), layer(x.detach()))


def test_hand_computed_trace():
    # u: 0.3 -> no spike, decays to 0.06; +0.5 = 0.56 -> spike, reset to 0; +0.5 = 0.5 -> not > 0.5
    # (strict threshold), decays to 0.1; +0.35 = 0.45 -> no spike; last membrane 0.2 * 0.45
    x = torch.tensor([[0.3], [0.5], [0.5], [0.35]])
    spikes, v = lif_multistep(x, 3.0)
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
    assert float(v) == pytest.approx(DECAY * 0.45)


@pytest.mark.parametrize("detach_reset", [True, False])
def test_matches_spikingjelly_lifnode(detach_reset):
    from spikingjelly.activation_based import neuron

    b = 2.5
    node = neuron.LIFNode(tau=1.25, decay_input=False, v_threshold=V_THRESHOLD, v_reset=0.0,
                          surrogate_function=DSpike(b=b), detach_reset=detach_reset, step_mode="m")
    x = _inputs((8, 2, 3, 6, 5), seed=7)
    ours = _grads(lambda x: lif_multistep(x, b, detach_reset=detach_reset), x)

    def sj(x):
        node.reset()
        spikes = node(x)
        return spikes, node.v * DECAY  # spikingjelly keeps the membrane before its next decay

    theirs = _grads(sj, x)
    assert torch.equal(ours[0], theirs[0])
    torch.testing.assert_close(ours[2], theirs[2], rtol=0, atol=1e-5)


def test_matches_snntorch_leaky():
    import snntorch

    b = 3.0
    leaky = snntorch.Leaky(beta=DECAY, threshold=V_THRESHOLD, reset_mechanism="zero", spike_grad=DSpike(b=b))
    x = _inputs((8, 2, 4, 9), seed=11)

    def snn(x):
        mem = leaky.reset_mem()
        spikes = []
        for x_t in x:
            spk, mem = leaky(x_t, mem)
            spikes.append(spk)
        return torch.stack(spikes), torch.zeros_like(mem)  # snntorch's mem is pre-reset: not compared

    ours = _grads(lambda x: (lif_multistep(x, b)[0], torch.zeros_like(x[0])), x)
    theirs = _grads(snn, x)
    assert torch.equal(ours[0], theirs[0])
    torch.testing.assert_close(ours[2], theirs[2], rtol=0, atol=1e-5)


def test_outputs_binary_and_no_leaked_state():
    layer = MultiStepLIF(b=3.0)
    x = torch.randn(6, 4, 8, 8) + 0.3
    first = layer(x)
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    layer(torch.randn(6, 2, 8, 8) * 5)  # a different batch in between changes nothing
    assert torch.equal(layer(x), first)
    # left/right folded into the batch never share membrane state
    left, right = x[:, :2], x[:, 2:]
    assert torch.equal(layer(torch.cat([left, right], 1)), torch.cat([layer(left), layer(right)], 1))


def test_b_is_module_state():
    layer = ConvBNLIF(2, 4, b=5.0)
    state = layer.state_dict()
    assert float(state["neuron.b"]) == 5.0
    other = ConvBNLIF(2, 4)
    other.load_state_dict(state)
    assert float(other.neuron.b) == 5.0
    assert "b=5" in repr(other.neuron)


@pytest.mark.parametrize("dims", [2, 3])
def test_convbnlif_folds_time_into_batch(dims):
    torch.manual_seed(0)
    block = ConvBNLIF(3, 5, kernel_size=3, stride=2 if dims == 2 else 1, dims=dims, b=4.0)
    with torch.no_grad():  # non-trivial BN so that eval mode is not the identity
        block.bn.running_mean.uniform_(-0.2, 0.2)
        block.bn.running_var.uniform_(0.5, 1.5)
    block.eval()
    spatial = (9, 10) if dims == 2 else (4, 6, 7)
    x = torch.rand(4, 2, 3, *spatial)
    out = block(x)
    membrane = torch.stack([block.bn(block.conv(x_t)) for x_t in x])  # conv+BN step by step
    torch.testing.assert_close(block.membrane_input(x), membrane)
    assert torch.equal(out, lif_multistep_reference(membrane, 4.0)[0])
    assert out.shape[:3] == (4, 2, 5)


def test_bn_statistics_pool_time_batch_and_views():
    block = ConvBNLIF(2, 3, kernel_size=1)
    block.bn.momentum = 1.0  # running stats = this batch's stats
    x = torch.randn(5, 4, 2, 6, 6)
    block.train()
    block(x)
    conv_out = block.conv(x.flatten(0, 1))
    torch.testing.assert_close(block.bn.running_mean, conv_out.mean(dim=(0, 2, 3)).detach())


def test_ann_twin_and_helpers():
    relu_block = ConvBNLIF(2, 3, ann=True)
    assert isinstance(relu_block.neuron, SequenceReLU)
    assert isinstance(make_activation(False, 4.0), MultiStepLIF)
    net = nn.Sequential(ConvBNLIF(2, 3), ConvBNLIF(3, 3, dims=2), relu_block)
    assert list(lif_modules(net)) == ["0.neuron", "1.neuron"]
    assert set_lif_compile(net, True) == 2
    assert all(m.compiled for m in lif_modules(net).values())
    with pytest.raises(ValueError):
        lif_multistep(torch.zeros(0, 3), 3.0)
    with pytest.raises(ValueError):
        ConvBNLIF(2, 3, dims=1)


def test_compiled_path_matches_eager():
    x = _inputs((4, 2, 3, 5), seed=5)
    eager = _grads(lambda x: lif_multistep(x, torch.tensor(3.0)), x)
    compiled = _grads(lambda x: lif_multistep(x, torch.tensor(3.0), compiled=True), x)
    assert torch.equal(eager[0], compiled[0])
    torch.testing.assert_close(compiled[2], eager[2], rtol=0, atol=1e-5)
