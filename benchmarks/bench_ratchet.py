"""How far correct kernels move the matrix's errors: the default lane on other CPU paths.

The same releases, run with the instruction sets and settings other machines would use
(torch's AVX2 or plain kernels, oneDNN limited to AVX2 or SSE4.1, MKL and OpenBLAS likewise,
TensorFlow's oneDNN off, one thread), measured against the committed baseline: the largest
ratio of a run's error to the larger of its baseline and the reference's drift is what the
ratchet factor must stay above.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {
    "AVX2, oneDNN off in TensorFlow, one thread": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",
        "TF_ENABLE_ONEDNN_OPTS": "0",
        "OMP_NUM_THREADS": "1",
    },
    "no vector kernels in torch, SSE4 elsewhere": {
        "ATEN_CPU_CAPABILITY": "default",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "OPENBLAS_CORETYPE": "Nehalem",
    },
}


def _ratios(record: dict) -> tuple[float, float, str, int]:
    """(largest ratio to max(baseline, drift), largest to the baseline alone, where, runs)."""
    worst, worst_plain, where, runs = 0.0, 0.0, "", 0
    for cell in record["cells"]:
        baseline = cell["baseline"] or {}
        for run, error in cell["max_errors"].items():
            if run not in baseline:
                continue
            runs += 1
            ratio = error / max(baseline[run], cell["reference_drift"][run])
            worst_plain = max(worst_plain, error / baseline[run])
            if ratio > worst:
                worst, where = ratio, f"{cell['id']} {run}"
    return worst, worst_plain, where, runs


def measure() -> dict[str, tuple[float, float, str, int]]:
    results = {}
    for name, settings in VARIANTS.items():
        with tempfile.TemporaryDirectory() as folder:
            record = Path(folder) / "lane.json"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "xframe_bilstm",
                    "matrix",
                    "--lane",
                    "default",
                    "--jobs",
                    "2",
                    "--json",
                    str(record),
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env={**os.environ, **settings},
            )
            results[name] = _ratios(json.loads(record.read_text()))
        print(f"  ratchet study: {name} done", flush=True)
    return results


def section(results: dict[str, tuple[float, float, str, int]], ratchet: float) -> list[str]:
    lines = [
        "## The ratchet factor: errors on other CPU code paths",
        "",
        "The default lane with the same releases but the kernels other machines would run, "
        "against the committed baseline. *Ratio* is a run's error over the larger of its "
        "baseline and the float32 reference's drift (what the ratchet compares); the ratio "
        "to the baseline alone is shown for comparison.",
        "",
        "| code path | runs | largest ratio | where | ratio to the baseline alone |",
        "|---|---|---|---|---|",
    ]
    for name, (worst, plain, where, runs) in results.items():
        lines.append(f"| {name} | {runs} | {worst:.2f} | `{where}` | {plain:.2f} |")
    largest = max(worst for worst, *_ in results.values())
    lines += [
        "",
        f"The ratchet factor is {ratchet:g}: {ratchet / largest:.1f} times the largest ratio "
        "correct kernels showed here.",
        "",
    ]
    return lines
