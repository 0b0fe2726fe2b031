#!/usr/bin/env python3
"""Measure the CPU kernel paths: how far each is from the others and from float64.

For bidirectional two-layer stacks (LSTM, GRU, SimpleRNN; random and trained-like weights;
with and without padding) it runs ``compare(paths="all")`` on PyTorch and Keras in float32:
PyTorch with and without its oneDNN (mkldnn) RNN kernel, TensorFlow with its oneDNN
optimizations on and off (a process each), Keras unrolled. It writes, per run, the kernel
that ran, the max error against the float64 reference and against its framework's default
path, next to the float32 reference's own drift.

    python benchmarks/kernel_paths.py     # writes docs/results/kernel-paths.{md,json}
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch  # before TensorFlow

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.tolerance import float32_stack  # noqa: E402
from xframe_bilstm.factories import random_stack  # noqa: E402
from xframe_bilstm.runner import compare  # noqa: E402

RESULTS = ROOT / "docs" / "results"
BATCH, STEPS, FEATURES, UNITS, LAYERS = 8, 100, 32, 64, 2


def configurations() -> list[dict[str, object]]:
    return [
        {"cell": cell, "scale": scale, "padded": padded}
        for cell in ("lstm", "gru", "simple_rnn")
        for scale in (1.0, 3.0)
        for padded in (False, True)
    ]


def measure(config: dict[str, object]) -> dict[str, object]:
    seed = 7
    rng = np.random.default_rng(seed)
    stack = random_stack(
        rng, str(config["cell"]), FEATURES, UNITS, num_layers=LAYERS, direction="bidirectional"
    )
    stack = float32_stack(stack, float(config["scale"]))  # type: ignore[arg-type]
    lengths = [STEPS, STEPS // 2, 1, STEPS - 1] * (BATCH // 4) if config["padded"] else None
    report = compare(
        stack,
        frameworks=["torch", "keras"],
        paths="all",
        seed=seed,
        batch=BATCH,
        steps=STEPS,
        lengths=lengths,
    )
    errors = {pair.label: pair.max_abs_error for pair in report.pairs}
    passed = {pair.label: pair.passed for pair in report.pairs}
    reference = "reference[cpu,float64]"
    runs = []
    for run in report.runs[1:]:
        default = f"{run.spec.framework}[{run.spec.device},{run.spec.dtype}]"
        runs.append(
            {
                "run": run.label,
                "kernel": run.kernel,
                "error": run.error,
                "vs_float64": errors.get(f"{run.label} vs {reference}"),
                "vs_default": 0.0
                if run.label == default
                else errors.get(f"{run.label} vs {default}"),
                "passed": passed.get(f"{run.label} vs {reference}", False),
            }
        )
    drift = report.tolerance_note.split("drift ")[1].split(" ")[0]
    return {**config, "float32_reference_drift": float(drift), "runs": runs}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def summary(results: list[dict[str, object]]) -> list[str]:
    """Per path: in how many models it moved the output, by how much at most, and its
    largest error as a multiple of the float32 reference's drift."""
    by_path: dict[str, list[tuple[float, float, float]]] = {}
    for result in results:
        drift = float(result["float32_reference_drift"])  # type: ignore[arg-type]
        for run in result["runs"]:  # type: ignore[attr-defined]
            if run["error"] is None:
                moved = (run["vs_default"], run["vs_float64"] / drift, float(not run["passed"]))
                by_path.setdefault(run["run"], []).append(moved)
    lines = [
        "## Summary",
        "",
        "| run | models where it differs from the default path | largest difference "
        "| largest error / drift | models where it fails against float64 |",
        "|---|---|---|---|---|",
    ]
    for label, rows in by_path.items():
        differs = sum(1 for vs_default, _, _ in rows if vs_default > 0)
        lines.append(
            f"| `{label}` | {differs} of {len(rows)} | {max(r[0] for r in rows):.3g} "
            f"| {max(r[1] for r in rows):.3g} | {int(sum(r[2] for r in rows))} |"
        )
    return lines


def markdown(results: list[dict[str, object]], versions: str) -> str:
    lines = [
        "# CPU kernel paths: how far apart they are",
        "",
        "Produced by `python benchmarks/kernel_paths.py` on "
        f"{cpu_name()} ({os.cpu_count()} cores), {versions}.",
        "",
        f"Each model: a 2-layer bidirectional stack, input ({BATCH}, {STEPS}, {FEATURES}), "
        f"{UNITS} units, float32 weights (scale 3 is as large as trained weights get); padded "
        f"inputs have lengths {STEPS}, {STEPS // 2}, 1, {STEPS - 1} repeating. Errors are max "
        "absolute differences over every output; 'vs default' compares a path with its "
        "framework's default path on the same input; the float32 reference drift is the "
        "float32 numpy reference's distance from float64 (the tolerance is 10 times it).",
        "",
        *summary(results),
        "",
        "## Every run",
        "",
        "| cell | scale | padded | drift | run | kernel | vs float64 | vs default |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for run in result["runs"]:  # type: ignore[attr-defined]
            if run["error"]:
                row = f"failed: {run['error']} | | "
            else:
                row = f"{run['kernel']} | {run['vs_float64']:.3g} | {run['vs_default']:.3g}"
            lines.append(
                f"| {result['cell']} | {result['scale']:g} | {'yes' if result['padded'] else 'no'}"
                f" | {result['float32_reference_drift']:.3g} | `{run['run']}` | {row} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    import keras
    import tensorflow as tf

    versions = f"torch {torch.__version__}, tensorflow {tf.__version__}, keras {keras.__version__}"
    results = []
    for config in configurations():
        results.append(measure(config))
        print(config, file=sys.stderr, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "kernel-paths.json").write_text(
        json.dumps({"versions": versions, "results": results}, indent=1) + "\n"
    )
    (RESULTS / "kernel-paths.md").write_text(markdown(results, versions))
    print(markdown(results, versions))


if __name__ == "__main__":
    main()
