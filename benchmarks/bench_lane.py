"""The default lane end to end: a fresh ``python -m xframe_bilstm matrix`` process, timed.

Runs with one and with two processes alternate, so load on the machine affects both alike.
Each run's JSON record gives the runner's overhead ratio: the time spent running cells over
the time the frameworks spent in their own runs (converting, compiling, running).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WALL_TARGET = 90.0
OVERHEAD_TARGET = 1.5


def _run(jobs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        record = Path(folder) / "lane.json"
        start = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "xframe_bilstm",
                "matrix",
                "--lane",
                "default",
                "--jobs",
                str(jobs),
                "--json",
                str(record),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"the default lane failed:\n{done.stdout[-3000:]}")
        data = json.loads(record.read_text())
    timings = data["timings"]
    return {
        "wall": wall,
        "cells": timings["cells"],
        "frameworks": timings["frameworks"],
        "imports": timings["imports"],
        "overhead": timings["overhead_ratio"],
        "count": data["summary"]["cells"],
    }


def measure(repeats: int, jobs: list[int]) -> dict[int, list[dict[str, float]]]:
    runs: dict[int, list[dict[str, float]]] = {j: [] for j in jobs}
    for _ in range(repeats):
        for j in jobs:
            runs[j].append(_run(j))
            print(f"  lane, {j} process(es): {runs[j][-1]['wall']:.1f} s", flush=True)
    return runs


def section(runs: dict[int, list[dict[str, float]]]) -> list[str]:
    lines = [
        "## The default lane end to end",
        "",
        "`python -m xframe_bilstm matrix --lane default --jobs N` as a fresh process: "
        "interpreter, framework imports, every cell, the summary and the JSON record. "
        "The overhead ratio is the time spent running cells (summed over processes) over "
        "the time spent inside the frameworks' own runs (converting the model into the "
        "framework, compiling, running, copying back); the rest is the float64 and float32 "
        "reference runs, the comparisons, the baseline check and bookkeeping.",
        "",
        "| processes | cells | wall (median, min–max) | imports | frameworks' own time "
        "| overhead ratio | targets |",
        "|---|---|---|---|---|---|---|",
    ]
    for jobs, values in runs.items():
        wall = [v["wall"] for v in values]
        median = statistics.median(wall)
        ratio = statistics.median(v["overhead"] for v in values)
        verdict = (
            f"wall {'met' if median <= WALL_TARGET else 'MISSED'} (≤ {WALL_TARGET:.0f} s), "
            f"ratio {'met' if ratio <= OVERHEAD_TARGET else 'MISSED'} (≤ {OVERHEAD_TARGET})"
        )
        lines.append(
            f"| {jobs} | {int(values[0]['count'])} | {median:.1f} s ({min(wall):.1f}–"
            f"{max(wall):.1f}) | {statistics.median(v['imports'] for v in values):.1f} s | "
            f"{statistics.median(v['frameworks'] for v in values):.1f} s | {ratio:.2f} | "
            f"{verdict} |"
        )
    return [*lines, ""]
