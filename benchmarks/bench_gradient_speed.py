#!/usr/bin/env python3
"""``compare(gradients=True)``, cold and warm, next to one eager Keras ``GradientTape`` step.

The case of ``compare_speed.py``: a Bidirectional LSTM (64 units, T=500, batch 4, 32
features). Every figure comes from fresh processes, started in turn (one of each kind per
round), so load on the machine affects both sides of a ratio alike:

1. The first ``compare(layer, gradients=True, frameworks=["torch", "keras"])`` in a fresh
   process (frameworks imported, the layer built), next to the first eager Keras training
   step of the same layer in another fresh process: a forward under ``tf.GradientTape``
   and ``tape.gradient`` with respect to the input and every weight, for a random
   cotangent on the output. The cold ratio is the first over the second.
2. In the first process, later ``compare()`` calls alternate with eager tape steps: the
   warm ratio.

    python benchmarks/bench_gradient_speed.py       # writes benchmarks/results/gradient_speed.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare_speed import BATCH, FEATURES, STEPS, UNITS, _layer_and_input  # noqa: E402
from fresh_process import ROOT, environment  # noqa: E402

RESULTS = HERE / "results" / "gradient_speed.md"
COMMAND = "python benchmarks/bench_gradient_speed.py"
REPEATS = 5
WARM_REPEATS = 3
FRAMEWORKS = ["torch", "keras"]


def _tape_step(layer, x, cotangent) -> None:
    """One eager training step's differentiation: input and weight gradients, as numpy."""
    import numpy as np
    import tensorflow as tf

    inputs = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = layer(inputs)
    grads = tape.gradient(
        outputs, [inputs, *layer.trainable_weights], output_gradients=tf.constant(cotangent)
    )
    for grad in grads:
        np.asarray(grad)


def _cotangent():
    import numpy as np

    shape = (BATCH, STEPS, 2 * UNITS)
    return np.random.default_rng(1).standard_normal(shape).astype("float32")


def child_compare() -> dict[str, object]:
    """In a fresh process: the first compare(), then warm ones alternating with tape steps."""
    import torch  # noqa: F401  (before TensorFlow)

    from xframe_bilstm import compare

    layer, x = _layer_and_input()
    start = time.perf_counter()
    report = compare(layer, inputs=x, frameworks=FRAMEWORKS, gradients=True)
    cold = time.perf_counter() - start
    assert report and report.gradient_pairs, "\n".join(report.lines())
    runs = {run.label: round(run.seconds, 3) for run in report.runs}
    cotangent = _cotangent()
    warm, tape = [], []
    for _ in range(WARM_REPEATS):
        start = time.perf_counter()
        compare(layer, inputs=x, frameworks=FRAMEWORKS, gradients=True)
        warm.append(time.perf_counter() - start)
        start = time.perf_counter()
        _tape_step(layer, x, cotangent)
        tape.append(time.perf_counter() - start)
    return {
        "cold": cold,
        "runs": runs,
        "gradient_pairs": len(report.gradient_pairs),
        "warm": warm,
        "tape_warm": tape,
    }


def child_tape() -> dict[str, object]:
    """In a fresh process: the first eager tape step of the same layer."""
    import torch  # noqa: F401  (imported as in the compare process)

    layer, x = _layer_and_input()
    cotangent = _cotangent()
    start = time.perf_counter()
    _tape_step(layer, x, cotangent)
    return {"tape": time.perf_counter() - start}


def _child(kind: str, env: dict[str, str]) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", kind],
        check=True,
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
        cwd=ROOT,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(repeats: int = REPEATS) -> dict[str, list]:
    """One process of each kind per round, in turn; every figure in seconds."""
    found: dict[str, list] = {"tape": [], "cold": [], "warm": [], "tape_warm": [], "runs": []}
    with tempfile.TemporaryDirectory() as cache:
        env = environment(Path(cache))
        for _ in range(repeats):
            found["tape"].append(_child("tape", env)["tape"])
            first = _child("compare", env)
            found["cold"].append(first["cold"])
            found["runs"].append(first["runs"])
            found["warm"].extend(first["warm"])  # type: ignore[arg-type]
            found["tape_warm"].extend(first["tape_warm"])  # type: ignore[arg-type]
    return found


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}–{max(values):.2f})"


def ratios(found: dict[str, list]) -> dict[str, float]:
    """compare() over the tape step, cold and warm (medians over medians)."""
    return {
        "cold": statistics.median(found["cold"]) / statistics.median(found["tape"]),
        "warm": statistics.median(found["warm"]) / statistics.median(found["tape_warm"]),
    }


def section(found: dict[str, list], repeats: int) -> list[str]:
    """The Markdown section (``run_all.py`` adds it to ``RESULTS.md``)."""
    ratio = ratios(found)
    labels = found["runs"][0]
    each = {label: statistics.median(r[label] for r in found["runs"]) for label in labels}
    return [
        "## compare(gradients=True), cold and warm, against one eager Keras GradientTape step",
        "",
        f"Bidirectional LSTM {UNITS} units, T={STEPS}, batch {BATCH}, {FEATURES} features; "
        f'`compare(layer, gradients=True, frameworks=["torch", "keras"])` (the float64 '
        "reference, the Keras rebuild, the torch port and the layer itself, each forward "
        "and backward, six gradient pairs) against one eager `tf.GradientTape` step of the "
        "layer: forward, then `tape.gradient` with respect to the input and every weight "
        "for a random cotangent. "
        f"Medians (min–max) of {repeats} rounds of fresh processes, one of each kind per "
        f"round in turn; warm figures are {WARM_REPEATS} alternating calls per round.",
        "",
        "| first compare() | first tape step | cold ratio | warm compare() | warm tape step "
        "| warm ratio |",
        "|---|---|---|---|---|---|",
        f"| {_cell(found['cold'])} | {_cell(found['tape'])} | **{ratio['cold']:.2f}** "
        f"| {_cell(found['warm'])} | {_cell(found['tape_warm'])} | **{ratio['warm']:.2f}** |",
        "",
        "Forward runs of the first compare() (median seconds; the backward passes are not "
        "timed apart): " + ", ".join(f"{k} {v:.2f}" for k, v in each.items()),
        "",
    ]


def write_results(found: dict[str, list], repeats: int, command: str = COMMAND) -> list[str]:
    """Write ``benchmarks/results/gradient_speed.md``; its lines."""
    import keras
    import torch

    load = os.getloadavg()
    lines = [
        "# Gradient comparison speed, cold and warm",
        "",
        f"Produced by `{command}` on {platform.machine()} with {os.cpu_count()} cores "
        f"(python {platform.python_version()}, torch {torch.__version__}, keras "
        f"{keras.__version__}).",
        "",
        *section(found, repeats),
        f"Load average when it ended: {load[0]:.1f} (1 min), {load[2]:.1f} (15 min); the two "
        "sides of each ratio alternate within every round, so the load weighs on both.",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--child", choices=["compare", "tape"], help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=REPEATS, help="rounds (default 5)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_compare() if args.child == "compare" else child_tape()))
        return
    command = COMMAND + ("" if args.repeats == REPEATS else f" --repeats {args.repeats}")
    print("\n".join(write_results(measure(args.repeats), args.repeats, command)))


if __name__ == "__main__":
    main()
