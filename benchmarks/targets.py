"""The Targets table of ``benchmarks/RESULTS.md`` and why the missed ones are missed.

Built from what ``run_all.py`` measured; each row's figures come from the benchmark module
that measured them (``compare_speed``, ``bench_conversion``, ``bench_gradients``,
``whole_model_speed``, ...), so a regeneration keeps every row.
"""

from __future__ import annotations

import statistics
from typing import Any

import bench_conversion
import bench_gradients
import bench_import
import bench_lane
import bench_reference
import compare_speed
import whole_model_speed

COLD_TARGET, SCRIPT_TARGET = 0.5, 1.1  # issue #16
# The warm ratio before issue #16 (19812da), what "no slower than before" holds the warm
# compare() to when no earlier checkout is measured beside this one.
WARM_BEFORE = 1.01
WHOLE_MODEL_LINK = 'see "Converting a whole CRNN-sized model"'

# Why a target is missed, where the reason lies in the code rather than in the machine.
WHY = {
    "First compare()": (
        "What is left of the first call, per run: the Keras trace of the rebuilt layer and "
        "of the original (a `while_loop` graph per direction, then TensorFlow's graph "
        "optimisation), oneDNN generating its LSTM kernel on its first call in the process "
        "(about 0.2 s unloaded, 1 s loaded), the float64 reference and the float32 noise "
        "run. Not yet done: running the torch run while Keras traces (the kernel generation "
        "releases the GIL), which needs the runner to run runs concurrently."
    ),
    "`scripts/compare.py`": (
        "Beyond the framework imports: importing PyTorch's ONNX exporter (`torch.onnx`, "
        "which registers its custom ops: 0.3–0.5 s) and exporting with it, the two Keras "
        "traces and oneDNN's first LSTM call. The default frameworks run one after another "
        "in one process."
    ),
    "Default lane, one process": (
        "One process spends most of the lane in Keras: every new layer structure is built and "
        "its `tf.function` traced and optimised (0.1–0.4 s each), and the default lane has about "
        "200 structure and mask combinations, since it crosses every cell kind, direction, merge "
        "mode, depth and return variant. Runs that share a structure reuse the built layer and its "
        "compiled function; what is left is the tracing, which `--jobs 2` spreads over both cores."
    ),
    "Reference speed": (
        "The reference is a Python loop over time steps with a handful of numpy calls each, and "
        "at this size (B=4, H=16) each call costs its fixed overhead, a few microseconds, far "
        "more than its arithmetic; torch's LSTM runs the same loop in C++."
    ),
    "Reference gradient speed": (
        "The reference gradient runs the backward pass as a Python loop over time steps, "
        "with a handful of numpy calls each; see [results/gradients.md](results/gradients.md)."
    ),
    "Keras → torch, time": (
        "The copy into each torch parameter is a transpose (Keras keeps (D, G·H), torch "
        "(G·H, D)), read across strides, and reading the weights out of the Keras variables "
        "comes before it."
    ),
    "torch → Keras, time": (
        "Transposing each torch weight into Keras's orientation (strided copies) and "
        "TensorFlow's own copy of each weight into the variable it creates."
    ),
    "Keras → torch, memory": (
        "The weights read out of the Keras variables and the module's parameters are alive "
        "together while the conversion runs."
    ),
    "torch → Keras, memory": (
        "The kernels are created holding their weights (not zero-filled and then assigned); "
        "above the weights themselves are one weight's transposed copy and TensorFlow's "
        "tensor of it, while its variable is created, and the first use of TensorFlow's "
        "allocator in the process."
    ),
}


def _over(value: float, target: float) -> str:
    return f"{(value / target - 1) * 100:.0f}% over: see below"


def summary(results: dict[str, Any]) -> list[str]:
    """The Targets section: a row per target, then why the missed ones are missed."""
    rows: list[tuple[str, str]] = []  # (line, the key of WHY when missed)

    def row(what: str, measured: str, target: str, met: bool, note: str, why: str) -> None:
        note = note if met or note or not why else "see below"
        line = f"| {what} | {measured} | {target} | {'met' if met else 'MISSED'} |"
        line += f" {note} |" if note else " |"
        rows.append((line, "" if met else why))

    imported = results["imported"]
    median_import = imported["median"]
    row(
        "import time, no framework imported",
        f"{median_import * 1000:.0f} ms, imports {', '.join(imported['imported']) or 'none'}",
        f"≤ {bench_import.TARGET * 1000:.0f} ms, none",
        median_import <= bench_import.TARGET and not imported["imported"],
        "",
        "",
    )
    for count, values in results["lane"].items():
        wall = statistics.median(v["wall"] for v in values)
        ratio = statistics.median(v["overhead"] for v in values)
        met = wall <= bench_lane.WALL_TARGET
        note = "" if met else _over(wall, bench_lane.WALL_TARGET)
        row(
            f"default lane end to end, {count} process(es)",
            f"{wall:.1f} s",
            f"≤ {bench_lane.WALL_TARGET:g} s",
            met,
            note,
            "Default lane, one process",
        )
        row(
            f"runner overhead ratio, {count} process(es)",
            f"{ratio:.2f}",
            f"≤ {bench_lane.OVERHEAD_TARGET:g}",
            ratio <= bench_lane.OVERHEAD_TARGET,
            "",
            "",
        )
    _compare_rows(results["compared"], row)
    reference = results["reference"]
    slower = statistics.median(reference["reference"]) / statistics.median(reference["torch"])
    met = slower <= bench_reference.TARGET
    row(
        "float64 reference / torch float64 nn.LSTM",
        f"{slower:.2f}x",
        f"≤ {bench_reference.TARGET:g}x",
        met,
        "" if met else _over(slower, bench_reference.TARGET),
        "Reference speed",
    )
    gradient = bench_gradients.ratio(results["gradients"])
    row(
        "float64 reference gradient / torch float64 autograd (T=500 BiLSTM)",
        f"{gradient:.2f}x",
        f"≤ {bench_gradients.TARGET:g}x",
        gradient <= bench_gradients.TARGET,
        f"`{bench_gradients.COMMAND}`: [results/gradients.md](results/gradients.md)",
        "Reference gradient speed",
    )
    _conversion_rows(results["conversion"], row)
    runs, _ = results["whole_model"]
    port = statistics.median(r["seconds"] for r in runs["keras_to_torch_unverified"])
    h5py = statistics.median(r["seconds"] for r in runs["h5py_load"])
    met = port <= whole_model_speed.TARGET_H5PY * h5py
    row(
        "whole-model port / h5py reading the file",
        f"{port / h5py:.1f}x",
        f"≤ {whole_model_speed.TARGET_H5PY:g}x",
        met,
        "" if met else WHOLE_MODEL_LINK,
        "",
    )
    lines = ["## Targets", "", "| what | measured | target | | |", "|---|---|---|---|---|"]
    lines += [line for line, _ in rows] + [""]
    missed = list(dict.fromkeys(why for _, why in rows if why))
    if missed:
        lines += ["### Why the missed targets are missed", ""]
        lines += [f"- **{why}.** {WHY[why]}" for why in missed]
        lines.append("")
    return lines


def _compare_rows(found: dict[str, dict[str, list]], row: Any) -> None:
    """The cold, warm and script rows of ``compare_speed``'s fresh processes."""
    now = compare_speed.ratios(found["this checkout"])
    before = compare_speed.ratios(found["before"]) if "before" in found else None

    def measured(key: str) -> str:
        return f"{now[key]:.2f}x" + (f" ({before[key]:.2f}x before)" if before else "")

    row(
        f"first compare() in a fresh process / first eager Keras call (BiLSTM "
        f"{compare_speed.UNITS} units, T={compare_speed.STEPS})",
        measured("cold"),
        f"≤ {COLD_TARGET:g}x",
        now["cold"] <= COLD_TARGET,
        "" if now["cold"] <= COLD_TARGET else _over(now["cold"], COLD_TARGET),
        "First compare()",
    )
    warm_before = before["warm"] if before else WARM_BEFORE
    row(
        "warm compare() / eager Keras call, same case",
        measured("warm"),
        "no slower than before" + ("" if before else f" ({WARM_BEFORE:.2f}x)"),
        now["warm"] <= warm_before,
        "",
        "First compare()",
    )
    row(
        "`python scripts/compare.py` / importing torch, tensorflow, keras, onnx, onnxruntime",
        measured("script"),
        f"≤ {SCRIPT_TARGET:g}x",
        now["script"] <= SCRIPT_TARGET,
        "" if now["script"] <= SCRIPT_TARGET else _over(now["script"], SCRIPT_TARGET),
        "`scripts/compare.py`",
    )


def _conversion_rows(conversion: dict[str, dict[str, Any]], row: Any) -> None:
    """Time over the transposed copy (medians) and the largest peak over the weights."""
    target = bench_conversion.TARGET
    for direction, result in conversion.items():
        seconds = statistics.median(s for s, _ in result["convert"])
        copy = statistics.median(s for s, _ in result["copy"])
        # The largest peak, the first call in the process included (as the section shows).
        peak = max(p for _, p in result["convert"]) / result["bytes"]
        name = direction.replace("_to_", " → ").replace("keras", "Keras")
        for what, value, kind in (
            ("time / numpy transposed copy", seconds / copy, "time"),
            ("peak memory / weights", peak, "memory"),
        ):
            row(
                f"{name}: {what}",
                f"{value:.2f}x",
                f"≤ {target:g}x",
                value <= target,
                "" if value <= target else _over(value, target),
                f"{name}, {kind}",
            )
