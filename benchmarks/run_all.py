#!/usr/bin/env python3
"""Every benchmark of xframe_bilstm, printed and written to ``benchmarks/RESULTS.md``.

    python benchmarks/run_all.py                       # medians of 5 runs each
    python benchmarks/run_all.py --lane-jobs 1,2 --ratchet-study
    python benchmarks/run_all.py --before ../older-checkout   # compare() speed side by side

Ratios are measured side by side: both sides in one process (or one loop), alternating.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch  # before TensorFlow

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import bench_accuracy  # noqa: E402
import bench_conversion  # noqa: E402
import bench_gradient_accuracy  # noqa: E402
import bench_gradient_speed  # noqa: E402
import bench_gradients  # noqa: E402
import bench_import  # noqa: E402
import bench_lane  # noqa: E402
import bench_ratchet  # noqa: E402
import bench_reference  # noqa: E402
import compare_speed  # noqa: E402
import keras  # noqa: E402
import targets  # noqa: E402
import tensorflow as tf  # noqa: E402
import whole_model_speed  # noqa: E402

from xframe_bilstm.matrix import load_table  # noqa: E402

RESULTS = HERE / "RESULTS.md"
PEERS_LINK = (
    "torch → Keras on trained models side by side with the tracing peer (nobuco): "
    "[results/peers_nobuco.md](results/peers_nobuco.md) (`python benchmarks/peers/run.py`)."
)
TFLITE_LINK = (
    "TFLite's dynamic-range quantized run, its error against its budget: "
    "[results/tflite_quantized.md](results/tflite_quantized.md) "
    "(`python benchmarks/bench_tflite_quantized.py`)."
)
COMPARE_TITLE = "## compare(), cold and warm, against one eager Keras call"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per median (at least 5)")
    parser.add_argument("--lane-jobs", default="2", help="process counts for the lane, e.g. 1,2")
    parser.add_argument(
        "--ratchet-study", action="store_true", help="also run the lane on other CPU code paths"
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="an earlier checkout whose compare() speed is measured beside this one's",
    )
    args = parser.parse_args()
    repeats = max(args.repeats, 5)
    jobs = [int(j) for j in args.lane_jobs.split(",")]
    command = "python benchmarks/run_all.py" + "".join(f" {a}" for a in sys.argv[1:])
    started = time.time()
    results = measure(repeats, jobs, before=args.before, ratchet_study=args.ratchet_study)
    text = render(results, command, repeats, time.time() - started)
    RESULTS.write_text(text)
    print(text)


def measure(
    repeats: int, jobs: list[int], *, before: Path | None = None, ratchet_study: bool = False
) -> dict[str, Any]:
    """Every benchmark, each by its own module; what :func:`render` turns into the file."""
    results: dict[str, Any] = {}
    print("import time", flush=True)
    results["imported"] = bench_import.measure(repeats)
    print("reference against torch", flush=True)
    results["reference"] = bench_reference.measure(repeats)
    print("reference gradient against torch autograd", flush=True)
    results["gradients"] = bench_gradients.measure(repeats)
    bench_gradients.write_results(results["gradients"], repeats)  # the targets link to it
    print("compare(), cold and warm, in fresh processes", flush=True)
    packages = {"this checkout": HERE.parent}
    if before is not None:
        packages = {f"before ({before.name})": before.resolve(), **packages}
    found = compare_speed.measure(packages, repeats)
    # The targets read the earlier checkout as "before" whatever its folder is called.
    results["compared"] = {("before" if k.startswith("before") else k): v for k, v in found.items()}
    results["compared_labels"] = list(found)
    print("accuracy", flush=True)
    results["accuracy"] = bench_accuracy.measure(repeats)
    print("compare(gradients=True), cold and warm, in fresh processes", flush=True)
    results["gradient_speed"] = bench_gradient_speed.measure(repeats)
    bench_gradient_speed.write_results(results["gradient_speed"], repeats)
    print("gradient accuracy", flush=True)
    results["gradient_accuracy"] = bench_gradient_accuracy.measure(repeats)
    bench_gradient_accuracy.write_results(results["gradient_accuracy"], repeats)
    print("conversion", flush=True)
    results["conversion"] = bench_conversion.measure(repeats)
    print("whole-model conversion", flush=True)
    results["whole_model"] = whole_model_speed.measure_all()
    print("default lane", flush=True)
    results["lane"] = bench_lane.measure(repeats, jobs)
    results["study"] = bench_ratchet.measure() if ratchet_study else None
    return results


def render(results: dict[str, Any], command: str, repeats: int, seconds: float) -> str:
    """``benchmarks/RESULTS.md`` from what :func:`measure` returned."""
    lines = _header(command, repeats, seconds)
    lines += targets.summary(results)
    lines += bench_import.section(results["imported"])
    if results["lane"]:
        lines += bench_lane.section(results["lane"])
    lines += _compare_section(results, repeats)
    lines += bench_reference.section(results["reference"])
    lines += bench_accuracy.section(results["accuracy"], repeats)
    lines += bench_gradient_accuracy.section(results["gradient_accuracy"], repeats)
    lines += bench_gradient_speed.section(results["gradient_speed"], repeats)
    lines += bench_conversion.section(results["conversion"])
    lines += whole_model_speed.section(*results["whole_model"])
    lines += [PEERS_LINK, ""]  # measured on its own, in two environments
    lines += [TFLITE_LINK, ""]  # measured on its own (conversions take seconds each)
    if results.get("study") is not None:
        lines += bench_ratchet.section(results["study"], load_table().ratchet)
    return "\n".join(lines).rstrip() + "\n"


def _compare_section(results: dict[str, Any], repeats: int) -> list[str]:
    # The report's own labels ("before (<folder>)"), in the order they were measured.
    found = dict(zip(results["compared_labels"], results["compared"].values(), strict=True))
    lines = compare_speed.report(
        found, repeats, title=COMPARE_TITLE, command="python benchmarks/run_all.py"
    )
    load = os.getloadavg()
    return [
        *lines,
        "",
        f"Load average when it ended: {load[0]:.1f} (1 min), {load[2]:.1f} (15 min) on "
        f"{os.cpu_count()} cores; the two sides of each ratio alternate within every round, "
        "so the load weighs on both.",
        "",
    ]


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


if __name__ == "__main__":
    main()
