"""The float64 numpy reference against torch's own float64 ``nn.LSTM`` on CPU.

The configuration of ``compare_speed.py``: a Bidirectional LSTM, T=500, B=4, D=10, H=16,
the same weights in both. Both run in this process, alternating.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from xframe_bilstm.adapters.torch import canonical_to_torch
from xframe_bilstm.matrix import cell_stack, lane_cells, load_table
from xframe_bilstm.reference import run_reference

STEPS, BATCH, FEATURES, UNITS = 500, 4, 10, 16
TARGET = 2.0


def _stack():
    from dataclasses import replace

    cells, _ = lane_cells(load_table(), "default", available=set())
    base = next(c for c in cells if c.cell == "lstm" and c.merge_mode == "concat")
    cell = replace(base, layers=1, returns="sequences", units=UNITS, input_size=FEATURES)
    return cell_stack(cell)


def measure(repeats: int) -> dict[str, object]:
    stack = _stack()
    x = np.random.default_rng(0).standard_normal((BATCH, STEPS, FEATURES))
    (rnn,) = canonical_to_torch(stack).double().eval().rnns
    assert isinstance(rnn, torch.nn.LSTM) and rnn.bidirectional
    inputs = torch.from_numpy(x)
    with torch.no_grad():
        expected = rnn(inputs)[0].numpy()
    (ours,) = run_reference(stack, x)
    agreement = float(np.abs(ours - expected).max())
    reference, native = [], []
    for _ in range(repeats + 1):  # the first of each warms caches and is dropped
        start = time.perf_counter()
        run_reference(stack, x)
        reference.append(time.perf_counter() - start)
        start = time.perf_counter()
        with torch.no_grad():
            rnn(inputs)
        native.append(time.perf_counter() - start)
    return {
        "reference": reference[1:],
        "torch": native[1:],
        "agreement": agreement,
        "threads": torch.get_num_threads(),
    }


def section(result: dict[str, object]) -> list[str]:
    reference = statistics.median(result["reference"])  # type: ignore[arg-type]
    native = statistics.median(result["torch"])  # type: ignore[arg-type]
    ratio = reference / native
    verdict = "met" if ratio <= TARGET else "MISSED"
    return [
        "## The float64 reference against torch's float64 nn.LSTM",
        "",
        f"Bidirectional LSTM, T={STEPS}, B={BATCH}, D={FEATURES}, H={UNITS}, float64 on CPU "
        f"({result['threads']} torch threads); both give the same outputs to "
        f"{result['agreement']:.1e}.",
        "",
        "| what | median |",
        "|---|---|",
        f"| `run_reference` (numpy, float64) | {reference * 1000:.1f} ms |",
        f"| `nn.LSTM` forward (torch, float64) | {native * 1000:.1f} ms |",
        "",
        f"Reference / torch: **{ratio:.2f}x** (target ≤ {TARGET:g}x slower: {verdict}).",
        "",
    ]
