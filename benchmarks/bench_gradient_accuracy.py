#!/usr/bin/env python3
"""Each framework's float32 gradient error against the float64 reference, for T = 10, 100, 1000.

The layers of ``bench_accuracy.py`` (a Bidirectional LSTM and a Bidirectional GRU, H=16,
D=10, B=4, the matrix's weights), seeded inputs per length, each run through
``compare(gradients=True)``: the gradients of ``Σ cotangent ⊙ output`` for a seeded random
cotangent, with respect to the input and every weight. A run's error is its largest
absolute difference from the float64 reference gradient over all of them, in units of
float32 epsilon times the gradient's scale (its largest magnitude, at least 1), the scale
``compare()`` derives its gradient tolerance from. The float32 reference (the same
backpropagation in numpy, float32) shows what rounding alone does.

    python benchmarks/bench_gradient_accuracy.py   # writes benchmarks/results/gradient_accuracy.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
import torch  # before TensorFlow

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_accuracy import BATCH, EPS, FEATURES, LENGTHS, UNITS, _exponent, _stacks  # noqa: E402

from xframe_bilstm import compare  # noqa: E402
from xframe_bilstm.gradients import draw_cotangents, gradient_noise  # noqa: E402
from xframe_bilstm.reference import reference_outputs  # noqa: E402

RESULTS = HERE / "results" / "gradient_accuracy.md"
COMMAND = "python benchmarks/bench_gradient_accuracy.py"
FRAMEWORKS = ("torch", "keras")
SEEDS = 5

Errors = dict[str, dict[str, dict[int, list[float]]]]


def _one(stack, steps: int, seed: int) -> dict[str, float]:
    """Every run's gradient error for one input, in float32 eps × the gradient's scale."""
    report = compare(
        stack, frameworks=list(FRAMEWORKS), steps=steps, batch=BATCH, seed=seed, gradients=True
    )
    assert report and report.gradient_pairs, "\n".join(report.lines())
    # The input compare() drew, and its cotangents, to measure the float32 reference.
    x = np.random.default_rng(seed).standard_normal((BATCH, steps, FEATURES))
    cotangents = draw_cotangents(reference_outputs(stack, x), seed)
    noise = gradient_noise(stack, x, cotangents, initial_states=None, lengths=None)
    # The same scale as the report's own, else the input above is not the one compared.
    assert f"gradient scale {noise.scale:.3g})" in report.gradient_note, report.gradient_note
    unit = EPS * noise.scale
    errors = {"float32 reference": noise.float32 / unit}
    for pair in report.gradient_pairs:
        if pair.expected.startswith("reference"):
            name = pair.actual.split("[")[0]
            errors[name] = max(errors.get(name, 0.0), pair.comparison.max_abs_error / unit)
    return errors


def measure(seeds: int = SEEDS) -> Errors:
    """errors[model][run][T]: one error per seed."""
    errors: Errors = {}
    for kind, stack in _stacks().items():
        table = errors.setdefault(kind, {})
        for steps in LENGTHS:
            for seed in range(seeds):
                for name, error in _one(stack, steps, seed).items():
                    table.setdefault(name, {}).setdefault(steps, []).append(error)
            print(f"  gradient accuracy: {kind} T={steps} done", flush=True)
    return errors


def section(errors: Errors, seeds: int) -> list[str]:
    """The Markdown section (``run_all.py`` adds it to ``RESULTS.md``)."""
    lines = [
        "## Gradient accuracy: float32 gradient error against the float64 reference",
        "",
        "Max absolute error over the input gradient and every weight gradient, in float32 eps "
        f"(2^-23 ≈ {EPS:.3g}) times the gradient's scale (its largest magnitude, at least 1); "
        f"median over {seeds} seeded inputs and cotangents, the largest in brackets. "
        f"Bidirectional layers, H={UNITS}, D={FEATURES}, B={BATCH}. *Growth* is p in "
        "error ∝ T^p through the medians; T^0.5 is what independent rounding errors add up "
        "to, and a weight gradient sums one contribution per time step.",
        "",
    ]
    for kind, table in errors.items():
        lines += [
            f"### Bidirectional {kind.upper()}",
            "",
            "| run | " + " | ".join(f"T={t}" for t in LENGTHS) + " | growth p | T=1000 / T=10 |",
            "|---|" + "---|" * (len(LENGTHS) + 2),
        ]
        for name in (*FRAMEWORKS, "float32 reference"):
            by_length = table[name]
            medians = [statistics.median(by_length[t]) for t in LENGTHS]
            cells = [f"{m:.1f} ({max(by_length[t]):.1f})" for m, t in zip(medians, LENGTHS)]
            lines.append(
                f"| {name} | "
                + " | ".join(cells)
                + f" | {_exponent(medians):.2f} | {medians[-1] / medians[0]:.1f}x |"
            )
        lines.append("")
    return lines


def write_results(errors: Errors, seeds: int, command: str = COMMAND) -> list[str]:
    """Write ``benchmarks/results/gradient_accuracy.md``; its lines."""
    import keras

    lines = [
        "# Gradient accuracy over sequence length",
        "",
        f"Produced by `{command}` on {platform.machine()} (python "
        f"{platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"keras {keras.__version__}).",
        "",
        *section(errors, seeds),
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=SEEDS, help="inputs per length (default 5)")
    args = parser.parse_args()
    command = COMMAND + ("" if args.seeds == SEEDS else f" --seeds {args.seeds}")
    print("\n".join(write_results(measure(args.seeds), args.seeds, command)))


if __name__ == "__main__":
    main()
