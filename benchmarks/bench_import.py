"""How long ``import xframe_bilstm`` takes in a fresh interpreter, and what it imports."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("torch", "tensorflow", "keras", "onnx", "onnxruntime", "jax")
TARGET = 0.2

_CHILD = f"""
import json, sys, time
start = time.perf_counter()
import xframe_bilstm
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds,
                  "imported": [m for m in {FRAMEWORKS!r} if m in sys.modules]}}))
"""


def measure(repeats: int) -> dict[str, object]:
    """Median import time over ``repeats`` fresh interpreters (after one to warm the disk)."""
    runs = []
    for _ in range(repeats + 1):
        out = subprocess.run(
            [sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout
        runs.append(json.loads(out))
    runs = runs[1:]
    seconds = [run["seconds"] for run in runs]
    imported = sorted({name for run in runs for name in run["imported"]})
    return {"seconds": seconds, "median": statistics.median(seconds), "imported": imported}


def section(result: dict[str, object]) -> list[str]:
    median = float(result["median"])  # type: ignore[arg-type]
    imported = result["imported"] or ["none"]
    verdict = "met" if median <= TARGET and result["imported"] == [] else "MISSED"
    return [
        "## Import time",
        "",
        "`import xframe_bilstm` in a fresh interpreter, timed inside it (interpreter start-up "
        "excluded).",
        "",
        "| what | measured | target | |",
        "|---|---|---|---|",
        f"| import time (median) | {median * 1000:.0f} ms | ≤ {TARGET * 1000:.0f} ms | {verdict} |",
        f"| frameworks imported | {', '.join(imported)} | none | |",
        "",
    ]
