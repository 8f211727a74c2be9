"""Forward+backward time of one multi-step LIF layer (Dspike surrogate) against the field's frameworks.

Contenders, all with the same neuron (theta 0.5, decay 0.2, hard reset, reset detached) and the same
Dspike surrogate (b = 3): our fused MultiStepLIF, the plain step-by-step autograd loop, spikingjelly
2.0's LIFNode with a Dspike SurrogateFunctionBase subclass, and snntorch's Leaky with the same surrogate;
each eager and through torch.compile. Repeats are interleaved (round robin) so a busy machine slows
every contender alike; the median is reported with ratios to our eager layer.

    python bench/bench_lif.py                 # (T, B, C, H, W) = (8, 2, 32, 64, 96), 7 repeats
    python bench/bench_lif.py --no-compile --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from common.errors import UserError, run_cli
from models.neurons import DECAY, V_THRESHOLD, DSpike, MultiStepLIF, lif_multistep_reference
from stereo.runtime import resolve_device

B = 3.0
Step = Callable[[torch.Tensor], torch.Tensor]  # (T, ...) membrane input -> (T, ...) spikes


def contenders(compile_too: bool) -> dict[str, Step]:
    """name -> function from input sequence to spikes (fresh state on every call)."""
    from snntorch import Leaky
    from spikingjelly.activation_based import neuron

    ours = MultiStepLIF(b=B)
    ours_compiled = MultiStepLIF(b=B, compiled=True)
    sj_node = neuron.LIFNode(tau=1.25, decay_input=False, v_threshold=V_THRESHOLD, v_reset=0.0,
                             surrogate_function=DSpike(b=B), detach_reset=True, step_mode="m")
    leaky = Leaky(beta=DECAY, threshold=V_THRESHOLD, reset_mechanism="zero", spike_grad=DSpike(b=B))

    def spikingjelly(x: torch.Tensor) -> torch.Tensor:
        sj_node.reset()
        return sj_node(x)

    def snntorch(x: torch.Tensor) -> torch.Tensor:
        mem = torch.zeros_like(x[0])
        spikes = []
        for x_t in x:
            spk, mem = leaky(x_t, mem)
            spikes.append(spk)
        return torch.stack(spikes)

    def reference(x: torch.Tensor) -> torch.Tensor:
        return lif_multistep_reference(x, B)[0]

    runs: dict[str, Step] = {"ours (fused)": ours, "step-by-step reference": reference,
                             "spikingjelly 2.0 LIFNode": spikingjelly, "snntorch Leaky": snntorch}
    if compile_too:
        runs["ours (compiled)"] = ours_compiled
        runs["step-by-step reference (compiled)"] = torch.compile(reference, dynamic=False)
        sj_inner = torch.compile(sj_node, dynamic=False)

        def spikingjelly_compiled(x: torch.Tensor) -> torch.Tensor:
            sj_node.reset()
            return sj_inner(x)

        runs["spikingjelly 2.0 LIFNode (compiled)"] = spikingjelly_compiled
        runs["snntorch Leaky (compiled)"] = torch.compile(snntorch, dynamic=False)
    return runs


def fwd_bwd(step: Step, x: torch.Tensor, grad: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Seconds for one forward + backward (synchronised on CUDA), and the spikes."""
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    x.grad = None
    spikes = step(x)
    spikes.backward(grad)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, spikes.detach()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[8, 2, 32, 64, 96], help="T B C H W")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per contender (median reported)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile contenders")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    args = parser.parse_args(argv)
    if len(args.shape) < 2 or min(args.shape) < 1 or args.repeats < 1:
        raise UserError(f"--shape needs at least T and B, all >= 1, and --repeats >= 1; got {args.shape}, "
                        f"{args.repeats}")
    device = resolve_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(args.shape, generator=gen) * 0.6 + 0.25).to(device).requires_grad_()
    grad = torch.randn(args.shape, generator=gen).to(device)

    runs = contenders(not args.no_compile)
    times: dict[str, list[float]] = {name: [] for name in runs}
    notes: dict[str, str] = {}
    first_spikes = None
    for name, step in list(runs.items()):  # warm-up (and compilation); a contender that fails is reported
        try:
            started = time.perf_counter()
            _, spikes = fwd_bwd(step, x, grad)
            notes[name] = f"first call {time.perf_counter() - started:.1f} s"
            first_spikes = spikes if first_spikes is None else first_spikes
            if not torch.equal(spikes, first_spikes):
                notes[name] += ", SPIKES DIFFER"
        except Exception as err:  # noqa: BLE001 - a framework failing to compile is a result, not a crash
            notes[name] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
            del runs[name], times[name]
    for _ in range(args.repeats):
        for name, step in runs.items():
            times[name].append(fwd_bwd(step, x, grad)[0])

    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    base = medians["ours (fused)"]
    print(f"LIF forward+backward, input {tuple(args.shape)} float32 on {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print("| contender | ms | ratio to ours (fused) | notes |\n|---|---:|---:|---|")
    for name in notes:
        ms = f"{medians[name]:.1f}" if name in medians else "-"
        ratio = f"{medians[name] / base:.2f}" if name in medians else "-"
        print(f"| {name} | {ms} | {ratio} | {notes[name]} |")
    others = {n: m for n, m in medians.items() if not n.startswith("ours")}
    for label, ours_names, pool in (
        ("eager vs eager", ["ours (fused)"], {n: m for n, m in others.items() if not n.endswith("(compiled)")}),
        ("best vs best", [n for n in medians if n.startswith("ours")], others),
    ):
        if pool:
            ours_best = min(ours_names, key=medians.get)
            fastest = min(pool, key=pool.get)
            print(f"{label}: {ours_best} {medians[ours_best]:.1f} ms, fastest other {fastest} "
                  f"{pool[fastest]:.1f} ms -> ratio other/ours {pool[fastest] / medians[ours_best]:.2f}")

if __name__ == "__main__":
    run_cli(main)
