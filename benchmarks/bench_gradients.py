#!/usr/bin/env python3
"""The float64 reference gradient against torch's float64 autograd through ``nn.LSTM``.

The configuration of ``bench_reference.py``: a Bidirectional LSTM, T=500, B=4, D=10, H=16,
the same weights in both. One call is a forward and a backward pass for one cotangent:
``reference_gradients(stack, x, [g])`` against ``(rnn(x)[0] * g).sum().backward()`` with
the input requiring a gradient. Both run in this process, alternating; medians. Torch runs
once with its default threads and once with one thread (numpy's small products here run on
one); the target is checked on the faster torch of the two.

    python benchmarks/bench_gradients.py      # writes benchmarks/results/gradients.md
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench_reference import BATCH, FEATURES, STEPS, UNITS, _stack  # noqa: E402

from xframe_bilstm.adapters.torch import canonical_to_torch  # noqa: E402
from xframe_bilstm.reference import reference_gradients  # noqa: E402

RESULTS = HERE / "results" / "gradients.md"
COMMAND = "python benchmarks/bench_gradients.py"
REPEATS = 5
TARGET = 2.0


def _torch_step(rnn: torch.nn.LSTM, x: torch.Tensor, cotangent: torch.Tensor) -> None:
    rnn.zero_grad(set_to_none=True)
    x.grad = None
    (rnn(x)[0] * cotangent).sum().backward()


def _agreement(grads, rnn: torch.nn.LSTM, x: torch.Tensor) -> float:
    """The largest difference between the two, over the input and every weight gradient.

    torch stores ``W`` as (4H, D) where the canonical kernel is (D, 4H), in the same gate
    order, and gives each of its two biases the full gradient of the one canonical bias.
    """
    worst = float(np.abs(grads.inputs - x.grad.numpy()).max())
    for side, suffix in (("forward", ""), ("backward", "_reverse")):
        ours = {
            f"weight_ih_l0{suffix}": grads.weights[f"layers[0].{side}.kernel"].T,
            f"weight_hh_l0{suffix}": grads.weights[f"layers[0].{side}.recurrent_kernel"].T,
            f"bias_ih_l0{suffix}": grads.weights[f"layers[0].{side}.bias"],
            f"bias_hh_l0{suffix}": grads.weights[f"layers[0].{side}.bias"],
        }
        for name, parameter in rnn.named_parameters():
            if name in ours:
                worst = max(worst, float(np.abs(ours[name] - parameter.grad.numpy()).max()))
    return worst


def measure(repeats: int = REPEATS) -> dict[str, object]:
    stack = _stack()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, STEPS, FEATURES))
    cotangent = rng.standard_normal((BATCH, STEPS, stack.output_size))
    (rnn,) = canonical_to_torch(stack).double().rnns
    assert isinstance(rnn, torch.nn.LSTM) and rnn.bidirectional
    inputs = torch.from_numpy(x).requires_grad_(True)
    cotangent_t = torch.from_numpy(cotangent)

    grads = reference_gradients(stack, x, [cotangent])
    _torch_step(rnn, inputs, cotangent_t)
    agreement = _agreement(grads, rnn, inputs)

    default_threads = torch.get_num_threads()
    timings: dict[str, list[float]] = {}
    for threads in sorted({default_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        ours, theirs = [], []
        for _ in range(repeats + 1):  # the first of each warms caches and is dropped
            start = time.perf_counter()
            reference_gradients(stack, x, [cotangent])
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            _torch_step(rnn, inputs, cotangent_t)
            theirs.append(time.perf_counter() - start)
        timings[f"reference@{threads}"] = ours[1:]
        timings[f"torch@{threads}"] = theirs[1:]
    torch.set_num_threads(default_threads)
    return {"timings": timings, "agreement": agreement, "threads": default_threads}


def ratio(result: dict[str, object]) -> float:
    """Reference over the faster torch, each against the torch it alternated with."""
    timings: dict[str, list[float]] = result["timings"]  # type: ignore[assignment]
    ratios = []
    for key in timings:
        if key.startswith("torch@"):
            threads = key.split("@")[1]
            ratios.append(
                (
                    statistics.median(timings[key]),
                    statistics.median(timings[f"reference@{threads}"])
                    / statistics.median(timings[key]),
                )
            )
    return min(ratios)[1]


def section(result: dict[str, object]) -> list[str]:
    timings: dict[str, list[float]] = result["timings"]  # type: ignore[assignment]
    slower = ratio(result)
    verdict = "met" if slower <= TARGET else "MISSED"
    rows = []
    for key in sorted(timings, key=lambda k: (k.split("@")[1], k), reverse=True):
        who, threads = key.split("@")
        what = (
            "`reference_gradients` (numpy, float64)"
            if who == "reference"
            else "`nn.LSTM` forward + `.backward()` (torch autograd, float64)"
        )
        values = timings[key]
        rows.append(
            f"| {what} | {threads} | {statistics.median(values) * 1000:.0f} ms "
            f"| {min(values) * 1000:.0f}–{max(values) * 1000:.0f} ms |"
        )
    return [
        "## The float64 reference gradient against torch's float64 autograd",
        "",
        f"Bidirectional LSTM, T={STEPS}, B={BATCH}, D={FEATURES}, H={UNITS}, float64 on CPU, "
        "one forward and backward pass for a random cotangent on the output; the input, "
        f"weight and bias gradients of both agree to {result['agreement']:.1e}.",
        "",
        "| what | torch threads | median | min–max |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Reference / torch (the faster torch): **{slower:.2f}x** "
        f"(target ≤ {TARGET:g}x slower: {verdict}). Torch with more than one thread varies "
        "most with the load on the machine, since its threads wait on each other.",
        "",
    ]


def write_results(result: dict[str, object], repeats: int = REPEATS) -> list[str]:
    """Write ``benchmarks/results/gradients.md`` (``run_all.py`` links to it); its lines."""
    lines = [
        "# Reference gradient speed",
        "",
        f"Produced by `{COMMAND}` on {platform.machine()} (python {platform.python_version()}, "
        f"numpy {np.__version__}, torch {torch.__version__}); medians of {repeats} runs, "
        "both sides alternating in one process.",
        "",
        *section(result),
    ]
    RESULTS.write_text("\n".join(lines))
    return lines


def main() -> None:
    print("\n".join(write_results(measure())))


if __name__ == "__main__":
    main()
