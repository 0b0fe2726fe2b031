#!/usr/bin/env python3
"""Calibrate NOISE_FACTOR: how far correct float32 implementations drift from float64.

For bidirectional stacks over cells, lengths, depths, widths and weight scales, it measures
the float32 reference's distance from the float64 reference (the "noise" that
``derived_tolerance`` scales) and the distance of PyTorch's and Keras's float32 results from
float64, and reports their ratio. ``xframe_bilstm.comparison.NOISE_FACTOR`` must stay well
above the largest ratio.

    python benchmarks/tolerance.py            # writes benchmarks/results/tolerance.md
"""

from __future__ import annotations

import itertools
import platform
import sys
from pathlib import Path

import numpy as np
import torch  # before TensorFlow

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras

from xframe_bilstm.adapters.keras import canonical_to_keras, run_keras
from xframe_bilstm.adapters.torch import canonical_to_torch, run_torch
from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer, RecurrentStack
from xframe_bilstm.comparison import NOISE_FACTOR
from xframe_bilstm.factories import random_stack
from xframe_bilstm.reference import run_reference

RESULTS = Path(__file__).resolve().parent / "results" / "tolerance.md"


def float32_stack(stack: RecurrentStack, scale: float) -> RecurrentStack:
    """The same stack with kernels multiplied by ``scale`` (trained weights are larger)."""

    def cast(weights: DirectionWeights) -> DirectionWeights:
        bias = None if weights.bias is None else weights.bias.astype(np.float32)
        return DirectionWeights(
            (weights.kernel * scale).astype(np.float32),
            (weights.recurrent_kernel * scale).astype(np.float32),
            bias,
        )

    layers = tuple(
        RecurrentLayer(
            layer.cell,
            layer.input_size,
            layer.units,
            tuple(map(cast, layer.weights)),
            layer.direction,
            layer.merge_mode,
            layer.activation,
            layer.recurrent_activation,
            layer.reset_after,
        )
        for layer in stack.layers
    )
    return RecurrentStack(layers, stack.return_sequences, stack.return_state)


def largest(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def main() -> None:
    rows = []
    grid = itertools.product(["lstm", "gru", "simple_rnn"], [5, 50, 300], [1, 3], [1, 3], [8, 64])
    for cell, steps, scale, layers, units in grid:
        rng = np.random.default_rng(0)
        base = random_stack(
            rng, cell, 16, units, num_layers=layers, direction="bidirectional", return_state=True
        )
        stack = float32_stack(base, scale)
        x = rng.standard_normal((4, steps, 16)).astype(np.float32)
        exact = run_reference(stack, x.astype(np.float64))
        noise = largest(run_reference(stack, x, dtype=np.float32), exact)
        torch_error = largest(run_torch(canonical_to_torch(stack), x), exact)
        keras_error = largest(run_keras(canonical_to_keras(stack), x), exact)
        rows.append((cell, steps, scale, layers, units, noise, torch_error, keras_error))
        print(rows[-1], flush=True)

    worst = max(max(t, k) / n for *_, n, t, k in rows)
    lines = [
        "# Float32 drift relative to the float32 reference's own drift",
        "",
        "Produced by `python benchmarks/tolerance.py` "
        f"(python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__},"
        f" keras {keras.__version__}, CPU). Bidirectional stacks, batch 4, input size 16,",
        "random weights with per-gate scales, kernels multiplied by `scale`; errors are the",
        "largest absolute difference from the float64 reference over outputs and states.",
        "",
        f"Largest ratio (framework error / reference noise): **{worst:.2f}**; "
        f"`NOISE_FACTOR` is {NOISE_FACTOR:g}.",
        "",
        "| cell | T | scale | layers | H | float32 reference | torch | keras | max ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell, steps, scale, layers, units, noise, t, k in rows:
        lines.append(
            f"| {cell} | {steps} | {scale} | {layers} | {units} | {noise:.2e} | {t:.2e} | "
            f"{k:.2e} | {max(t, k) / noise:.2f} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"largest ratio {worst:.2f}; wrote {RESULTS}")


if __name__ == "__main__":
    main()
