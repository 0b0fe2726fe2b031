#!/usr/bin/env python3
"""Every benchmark of xframe_bilstm, printed and written to ``benchmarks/RESULTS.md``.

    python benchmarks/run_all.py                       # medians of 5 runs each
    python benchmarks/run_all.py --lane-jobs 1,2 --ratchet-study

Ratios are measured side by side: both sides in one process (or one loop), alternating.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch  # before TensorFlow

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import bench_accuracy  # noqa: E402
import bench_conversion  # noqa: E402
import bench_import  # noqa: E402
import bench_lane  # noqa: E402
import bench_ratchet  # noqa: E402
import bench_reference  # noqa: E402
import compare_speed  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import whole_model_speed  # noqa: E402

from xframe_bilstm.matrix import load_table  # noqa: E402

RESULTS = HERE / "RESULTS.md"
EAGER_TARGET = 0.5

# Why a target is missed, where the reason lies in the code rather than in the machine.
WHY = {
    "lane": (
        "One process spends most of the lane in Keras: every new layer structure is built and "
        "its `tf.function` traced and optimised (0.1–0.4 s each), and the default lane has about "
        "200 structure and mask combinations, since it crosses every cell kind, direction, merge "
        "mode, depth and return variant. Runs that share a structure reuse the built layer and its "
        "compiled function; what is left is the tracing, which `--jobs 2` spreads over both cores."
    ),
    "keras_to_torch": (
        "Profiled: most of the time (about 65%) is the copy into each torch parameter, which "
        "is a transpose, since the canonical form keeps Keras's (D, G·H) orientation and torch "
        "stores (G·H, D): it reads memory across strides, several times slower than a plain "
        "copy. Reading the weights out of the Keras variables and the canonical form's own "
        "frozen copy are the rest. At the peak the canonical copy of every weight and the "
        "module's parameters are alive together (2x), plus the arrays of the layer being read "
        "out of Keras."
    ),
    "torch_to_keras": (
        "Profiled: transposing each torch weight into Keras's orientation (strided copies, about "
        "45% of the time), the canonical form's own frozen copy, and Keras's assignment, which "
        "converts each numpy array to a tensor before copying it into the variable: about four "
        "passes over the weights where a plain copy makes one, two of them strided."
    ),
    "reference": (
        "The reference is a Python loop over time steps with a handful of numpy calls each, and "
        "at this size (B=4, H=16) each call costs its fixed overhead, a few microseconds, far "
        "more than its arithmetic; torch's LSTM runs the same loop in C++."
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per median (at least 5)")
    parser.add_argument("--lane-jobs", default="2", help="process counts for the lane, e.g. 1,2")
    parser.add_argument(
        "--ratchet-study", action="store_true", help="also run the lane on other CPU code paths"
    )
    args = parser.parse_args()
    repeats = max(args.repeats, 5)
    jobs = [int(j) for j in args.lane_jobs.split(",")]
    command = "python benchmarks/run_all.py" + "".join(f" {a}" for a in sys.argv[1:])
    started = time.time()

    print("import time", flush=True)
    imported = bench_import.measure(repeats)
    print("reference against torch", flush=True)
    reference = bench_reference.measure(repeats)
    print("compare() against one eager Keras call", flush=True)
    compared, eager = compare_speed.time_compare_and_eager()
    print("accuracy", flush=True)
    accuracy = bench_accuracy.measure(repeats)
    print("conversion", flush=True)
    conversion = bench_conversion.measure(repeats)
    print("whole-model conversion", flush=True)
    whole_model = whole_model_speed.measure_all()
    print("default lane", flush=True)
    lane = bench_lane.measure(repeats, jobs)
    study = bench_ratchet.measure() if args.ratchet_study else None

    lines = _header(command, repeats, time.time() - started)
    lines += _summary(imported, lane, compared, eager, reference, conversion)
    lines += bench_import.section(imported)
    lines += bench_lane.section(lane)
    lines += _eager_section(compared, eager)
    lines += bench_reference.section(reference)
    lines += bench_accuracy.section(accuracy, repeats)
    lines += bench_conversion.section(conversion)
    lines += whole_model_speed.section(*whole_model)
    if study is not None:
        lines += bench_ratchet.section(study, load_table().ratchet)
    text = "\n".join(lines).rstrip() + "\n"
    RESULTS.write_text(text)
    print(text)


def _header(command: str, repeats: int, seconds: float) -> list[str]:
    return [
        "# Benchmarks",
        "",
        f"Produced by `{command}` in {seconds / 60:.0f} minutes on {platform.machine()} with "
        f"{os.cpu_count()} cores (python {platform.python_version()}, numpy {np.__version__}, "
        f"torch {torch.__version__}, tensorflow {tf.__version__}, keras {keras.__version__}); "
        f"timings are medians of {repeats} runs. Ratios are measured side by side, both sides "
        "alternating in one run, so load on the machine affects them alike.",
        "",
    ]


def _summary(imported, lane, compared, eager, reference, conversion) -> list[str]:
    rows = []

    def row(what: str, measured: str, target: str, met: bool, why: str | None) -> None:
        rows.append(
            f"| {what} | {measured} | {target} | {'met' if met else 'MISSED'} |"
            + (f" {why} |" if why else " |")
        )

    median_import = imported["median"]
    row(
        "import time, no framework imported",
        f"{median_import * 1000:.0f} ms, imports {', '.join(imported['imported']) or 'none'}",
        "≤ 200 ms, none",
        median_import <= 0.2 and not imported["imported"],
        None,
    )
    for count, values in lane.items():
        wall = statistics.median(v["wall"] for v in values)
        ratio = statistics.median(v["overhead"] for v in values)
        missed = wall > bench_lane.WALL_TARGET
        row(
            f"default lane end to end, {count} process(es)",
            f"{wall:.1f} s",
            "≤ 90 s",
            not missed,
            f"{(wall / bench_lane.WALL_TARGET - 1) * 100:.0f}% over: see below" if missed else None,
        )
        row(
            f"runner overhead ratio, {count} process(es)",
            f"{ratio:.2f}",
            "≤ 1.5",
            ratio <= bench_lane.OVERHEAD_TARGET,
            None,
        )
    ratio = statistics.median(compared) / statistics.median(eager)
    row(
        "compare(), T=500 BiLSTM / one eager Keras call",
        f"{ratio:.2f}x",
        "≤ 0.5x",
        ratio <= EAGER_TARGET,
        None,
    )
    slower = statistics.median(reference["reference"]) / statistics.median(reference["torch"])
    row(
        "float64 reference / torch float64 nn.LSTM",
        f"{slower:.2f}x",
        "≤ 2x",
        slower <= bench_reference.TARGET,
        f"{(slower / bench_reference.TARGET - 1) * 100:.0f}% over: see below"
        if slower > bench_reference.TARGET
        else None,
    )
    for direction, result in conversion.items():
        seconds = statistics.median(s for s, _ in result["convert"])
        copy = statistics.median(s for s, _ in result["copy"])
        peak = statistics.median(p for _, p in result["convert"]) / result["bytes"]
        name = direction.replace("_to_", " → ").replace("keras", "Keras")
        for what, value in (
            ("time / numpy transposed copy", seconds / copy),
            ("peak memory / weights", peak),
        ):
            over = value > bench_conversion.TARGET
            row(
                f"{name}: {what}",
                f"{value:.2f}x",
                f"≤ {bench_conversion.TARGET:g}x",
                not over,
                f"{(value / bench_conversion.TARGET - 1) * 100:.0f}% over: see below"
                if over
                else None,
            )
    missed = [line for line in rows if "| MISSED |" in line]
    lines = [
        "## Targets",
        "",
        "| what | measured | target | | |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]
    if missed:
        lines += ["### Why the missed targets are missed", ""]
        if any("default lane" in line for line in missed):
            lines += [f"- **Default lane, one process.** {WHY['lane']}"]
        if any("reference" in line for line in missed):
            lines += [f"- **Reference speed.** {WHY['reference']}"]
        for direction in ("keras_to_torch", "torch_to_keras"):
            name = direction.replace("_to_", " → ").replace("keras", "Keras")
            if any(line.startswith(f"| {name}") for line in missed):
                lines += [f"- **{name}.** {WHY[direction]}"]
        lines.append("")
    return lines


def _eager_section(compared: list[float], eager: list[float]) -> list[str]:
    ratio = statistics.median(compared) / statistics.median(eager)
    return [
        "## compare() against one eager Keras call",
        "",
        "From `benchmarks/compare_speed.py` (`time_compare_and_eager`): `compare()` on a "
        f"Bidirectional LSTM with T={compare_speed.STEPS}, B={compare_speed.BATCH}, "
        f"H={compare_speed.UNITS}, across Keras, PyTorch and the float64 reference, alternating "
        "with one eager call of the same Keras layer. The first compare() builds and traces the "
        "compiled Keras layer; later ones reuse it.",
        "",
        "| what | median | min | max |",
        "|---|---|---|---|",
        f"| compare() | {statistics.median(compared):.3f} s | {min(compared):.3f} s | "
        f"{max(compared):.3f} s |",
        f"| eager Keras call | {statistics.median(eager):.3f} s | {min(eager):.3f} s | "
        f"{max(eager):.3f} s |",
        "",
        f"compare() / eager call: **{ratio:.2f}** (target ≤ {EAGER_TARGET}).",
        "",
    ]


if __name__ == "__main__":
    main()
