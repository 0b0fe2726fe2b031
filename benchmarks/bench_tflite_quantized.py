#!/usr/bin/env python3
"""How tight the budget of TFLite's dynamic-range quantized run is, on random layers.

Each layer (seeded weights, input (3, 12, 8)) runs as ``tflite[cpu,float32,
dynamic-range-int8]`` (TensorFlow's converter with ``Optimize.DEFAULT``, LiteRT's hybrid
int8 kernels) and on the float64 reference with its original weights. The error is the
largest distance between the two; the budget is the one the run derives
(:mod:`xframe_bilstm.frameworks.tflite_quantized`). A budget well above the error passes a
correct conversion; one not far above it still catches a wrong weight (the tests scale a
recurrent kernel by 1.25 and see it fail).

    python benchmarks/bench_tflite_quantized.py    # writes benchmarks/results/tflite_quantized.md
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import torch  # noqa: F401  (before TensorFlow)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from xframe_bilstm.factories import random_stack  # noqa: E402
from xframe_bilstm.frameworks import FRAMEWORKS, RunSpec  # noqa: E402
from xframe_bilstm.reference import run_reference  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "tflite_quantized.md"
SPEC = RunSpec("tflite", "cpu", "float32", path="dynamic-range-int8")
LAYERS = [  # cell, units, layers, direction
    ("lstm", 32, 1, "forward"),
    ("gru", 32, 2, "bidirectional"),
    ("simple_rnn", 40, 1, "forward"),
    ("lstm", 64, 2, "bidirectional"),
]
SEEDS = 4


def main() -> None:
    import tensorflow as tf

    tflite = FRAMEWORKS["tflite"]()
    rows = []
    for cell, units, layers, direction in LAYERS:
        for seed in range(SEEDS):
            rng = np.random.default_rng(seed)
            stack = random_stack(rng, cell, 8, units, num_layers=layers, direction=direction)
            x = np.random.default_rng(seed + 10).standard_normal((3, 12, 8))
            (got, *_), settings = tflite.run(stack, x, SPEC, initial_states=None, lengths=None)
            error = float(np.abs(got - run_reference(stack, x)[0]).max())
            budget = float(settings["quantization_budget"])
            rows.append((f"{cell} {units}, {layers} layer(s), {direction}", seed, error, budget))
            print(rows[-1], flush=True)
    ratios = [budget / error for *_, error, budget in rows]
    lines = [
        "# TFLite's dynamic-range quantized run: error against its budget",
        "",
        f"By `python benchmarks/bench_tflite_quantized.py` on {platform.machine()} (python "
        f"{platform.python_version()}, tensorflow {tf.__version__}, "
        f"{', '.join(f'{k} {v}' for k, v in tflite.versions().items() if k != 'tensorflow')}). "
        "Input (3, 12, 8); error: the largest distance of the quantized run's output from the "
        "float64 reference with the original weights; budget: the one the run derives.",
        "",
        "| layer | seed | error | budget | budget / error |",
        "|---|---|---|---|---|",
        *(
            f"| {layer} | {seed} | {error:.4f} | {budget:.4f} | {budget / error:.2f} |"
            for layer, seed, error, budget in rows
        ),
        "",
        f"Budget / error: {min(ratios):.2f}–{max(ratios):.2f} over {len(rows)} layers.",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
