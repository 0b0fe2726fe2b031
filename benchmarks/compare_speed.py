#!/usr/bin/env python3
"""How long the comparison takes, next to what people would otherwise do.

1. ``python scripts/compare.py`` as a fresh process (interpreter, imports, runs, report);
   the target is under 30 s on a 2-core machine.
2. ``compare()`` on a T=500 Bidirectional LSTM across Keras, PyTorch and the float64
   reference, next to a single *eager* call of the same Keras layer; the target is at most
   half of the eager call. Both are timed in this one process, alternating, so machine load
   affects them alike.

    python benchmarks/compare_speed.py        # writes benchmarks/results/compare_speed.md
"""

from __future__ import annotations

import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import torch  # before TensorFlow

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xframe_bilstm import compare  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "compare_speed.md"
REPEATS = 5
STEPS, BATCH, FEATURES, UNITS = 500, 4, 10, 16


def time_script() -> list[float]:
    seconds = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "compare.py")],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        seconds.append(time.perf_counter() - start)
    return seconds


def time_compare_and_eager() -> tuple[list[float], list[float]]:
    layer = keras.layers.Bidirectional(keras.layers.LSTM(UNITS, return_sequences=True))
    layer.build((None, None, FEATURES))
    x = np.random.default_rng(0).standard_normal((BATCH, STEPS, FEATURES)).astype("float32")
    layer(x)  # build Keras's own state once, outside the timings
    compared, eager = [], []
    for _ in range(REPEATS):
        start = time.perf_counter()
        report = compare(layer, inputs=x, frameworks=["keras", "torch"])
        compared.append(time.perf_counter() - start)
        assert report, "\n".join(report.lines())
        start = time.perf_counter()
        np.asarray(layer(x))
        eager.append(time.perf_counter() - start)
    return compared, eager


def main() -> None:
    script = time_script()
    compared, eager = time_compare_and_eager()
    ratio = statistics.median(compared) / statistics.median(eager)

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"

    lines = [
        "# Comparison speed",
        "",
        f"Produced by `python benchmarks/compare_speed.py` on {platform.machine()} with "
        f"{torch.get_num_threads()} torch threads (python {platform.python_version()}, "
        f"torch {torch.__version__}, keras {keras.__version__}); medians of {REPEATS} runs.",
        "",
        "| what | time | target |",
        "|---|---|---|",
        f"| `python scripts/compare.py` (fresh process, defaults) | {cell(script)} | < 30 s |",
        f"| `compare()`, Bidirectional LSTM T={STEPS}, B={BATCH}, H={UNITS}: keras, torch, "
        f"reference | {cell(compared)} | ≤ half the eager call |",
        f"| one eager Keras call of the same layer | {cell(eager)} | |",
        "",
        f"compare() / eager call: **{ratio:.2f}**.",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
