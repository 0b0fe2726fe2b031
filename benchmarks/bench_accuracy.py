"""Each framework's float32 error against the float64 reference, for T = 10, 100, 1000.

A Bidirectional LSTM and a Bidirectional GRU (H=16, D=10, B=4, the matrix's weights), five
seeded inputs per length, each run through ``compare()``. Errors are in units of float32's
machine epsilon (2^-23): the outputs are at most 1 in magnitude, so this is close to units
in the last place. The float32 reference (the same equations in numpy, float32) shows what
rounding alone does.
"""

from __future__ import annotations

import statistics
from dataclasses import replace

import numpy as np

from xframe_bilstm import compare
from xframe_bilstm.comparison import measure_noise
from xframe_bilstm.matrix import cell_stack, lane_cells, load_table

LENGTHS = (10, 100, 1000)
FRAMEWORKS = ("torch", "keras", "onnxruntime", "torch-onnx")
EPS = float(np.finfo(np.float32).eps)
BATCH, FEATURES, UNITS = 4, 10, 16


def _stacks():
    cells, _ = lane_cells(load_table(), "default", available=set())
    stacks = {}
    for kind in ("lstm", "gru"):
        base = next(c for c in cells if c.cell == kind and c.merge_mode == "concat")
        cell = replace(base, layers=1, returns="sequences", units=UNITS, input_size=FEATURES)
        stacks[kind] = cell_stack(cell)
    return stacks


def measure(seeds: int) -> dict[str, dict[str, dict[int, list[float]]]]:
    """errors[model][run][T]: one error per seed, in float32 eps."""
    errors: dict[str, dict[str, dict[int, list[float]]]] = {}
    for kind, stack in _stacks().items():
        table = errors.setdefault(kind, {})
        for steps in LENGTHS:
            for seed in range(seeds):
                report = compare(
                    stack, frameworks=list(FRAMEWORKS), steps=steps, batch=BATCH, seed=seed
                )
                assert report, "\n".join(report.lines())
                for pair in report.pairs:
                    if pair.expected.startswith("reference"):
                        name = pair.actual.split("[")[0]
                        table.setdefault(name, {}).setdefault(steps, [])
                        table[name][steps].append(pair.max_abs_error / EPS)
                x = np.random.default_rng(seed).standard_normal((BATCH, steps, FEATURES))
                noise = measure_noise(stack, x)
                table.setdefault("float32 reference", {}).setdefault(steps, [])
                table["float32 reference"][steps].append(noise.float32 / EPS)
            print(f"  accuracy: {kind} T={steps} done", flush=True)
    return errors


def _exponent(medians: list[float]) -> float:
    """p in error ∝ T^p, by least squares through the medians on log-log axes."""
    slope, _ = np.polyfit(np.log(LENGTHS), np.log(medians), 1)
    return float(slope)


def section(errors: dict[str, dict[str, dict[int, list[float]]]], seeds: int) -> list[str]:
    lines = [
        "## Accuracy: float32 error against the float64 reference",
        "",
        f"Max absolute error over every output and state, in float32 eps (2^-23 ≈ {EPS:.3g}); "
        f"median over {seeds} seeded inputs, the largest in brackets. Bidirectional layers, "
        f"H={UNITS}, D={FEATURES}, B={BATCH}. *Growth* is p in error ∝ T^p through the "
        "medians; T^0.5 is what independent rounding errors add up to.",
        "",
    ]
    for kind, table in errors.items():
        lines += [
            f"### Bidirectional {kind.upper()}",
            "",
            "| run | " + " | ".join(f"T={t}" for t in LENGTHS) + " | growth p | T=1000 / T=10 |",
            "|---|" + "---|" * (len(LENGTHS) + 2),
        ]
        for name, by_length in table.items():
            medians = [statistics.median(by_length[t]) for t in LENGTHS]
            cells = [f"{m:.1f} ({max(by_length[t]):.1f})" for m, t in zip(medians, LENGTHS)]
            lines.append(
                f"| {name} | "
                + " | ".join(cells)
                + f" | {_exponent(medians):.2f} | {medians[-1] / medians[0]:.1f}x |"
            )
        lines.append("")
    return lines
