"""Converting a 4-layer, 1024-unit Bidirectional LSTM: time and peak memory.

Each direction (Keras → torch of the live ``Sequential``, torch → Keras of the ``nn.LSTM``)
runs in a fresh process, after a small conversion that starts both frameworks. Timed in
the same process and alternating, so load on the machine affects all alike:

- a numpy *transposed* copy of the same weights (``np.ascontiguousarray(w.T)`` of each
  matrix, a copy of each bias): the orientation change every conversion makes, and the
  floor the time target is held to;
- a plain numpy copy of the weights, shown for scale;
- the conversion with ``verify=False`` (held to the targets);
- the conversion with ``verify=True``, reported beside it: it also runs the source and the
  result on a seeded (2, 7, 1024) input and the float64 and float32 reference runs that
  derive the tolerance, which is checking, not converting.

Peak memory is the highest resident set during the call above what was resident before it
(Linux's VmHWM, reset through /proc/self/clear_refs before each call, after freed memory
is handed back to the system with glibc's ``malloc_trim``).

    python benchmarks/bench_conversion.py --worker keras_to_torch 5   # one direction, JSON
"""

from __future__ import annotations

import ctypes
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LAYERS, UNITS, FEATURES = 4, 1024, 1024
DIRECTIONS = ("keras_to_torch", "torch_to_keras")
TARGET = 1.5  # issue #16: time over the transposed copy, and peak memory over the weights


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} is not in /proc/self/status")


def _timed_peak(call: Callable[[], Any]) -> tuple[float, int]:
    """Seconds and peak extra resident bytes of ``call()``; its result is dropped."""
    gc.collect()
    # Freed memory back to the system first: otherwise the call reuses what the last one
    # freed, which is resident already, and its peak reads low.
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM to the current resident set
    before = _status("VmRSS")
    start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - start
    peak = _status("VmHWM") - before
    del result
    gc.collect()
    return seconds, peak


def worker(direction: str, repeats: int) -> dict[str, object]:
    import numpy as np
    import torch  # before TensorFlow

    sys.path.insert(0, str(ROOT))
    from xframe_bilstm import keras_to_torch, torch_to_keras

    torch.manual_seed(0)
    # Both frameworks' first use (TensorFlow's runtime, torch's allocator) is not conversion.
    keras_to_torch(torch_to_keras(torch.nn.LSTM(3, 2, bidirectional=True), verify=False))
    module = torch.nn.LSTM(FEATURES, UNITS, LAYERS, batch_first=True, bidirectional=True)
    if direction == "keras_to_torch":
        source: Any = torch_to_keras(module, verify=False)
        del module
        arrays = [np.asarray(w) for w in source.get_weights()]

        def convert(verify: bool) -> Any:
            return keras_to_torch(source, verify=verify)
    else:
        source = module
        arrays = [p.detach().numpy() for p in module.parameters()]

        def convert(verify: bool) -> Any:
            return torch_to_keras(source, verify=verify)

    size = sum(a.nbytes for a in arrays)
    runs: dict[str, list[tuple[float, int]]] = {
        "copy": [],
        "plain": [],
        "convert": [],
        "verified": [],
    }
    for _ in range(repeats):
        runs["copy"].append(_timed_peak(lambda: [np.ascontiguousarray(a.T) for a in arrays]))
        runs["plain"].append(_timed_peak(lambda: [a.copy() for a in arrays]))
        runs["convert"].append(_timed_peak(lambda: convert(False)))
        runs["verified"].append(_timed_peak(lambda: convert(True)))
    return {"bytes": size, **runs}


def measure(repeats: int) -> dict[str, dict[str, object]]:
    results = {}
    for direction in DIRECTIONS:
        out = subprocess.run(
            [sys.executable, __file__, "--worker", direction, str(repeats)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
        results[direction] = json.loads(out.strip().splitlines()[-1])
        print(f"  conversion {direction} done", flush=True)
    return results


def section(results: dict[str, dict[str, object]]) -> list[str]:
    size = int(next(iter(results.values()))["bytes"])  # type: ignore[call-overload]
    repeats = len(next(iter(results.values()))["convert"])  # type: ignore[arg-type]
    lines = [
        "## Converting a 4-layer 1024-unit Bidirectional LSTM",
        "",
        f"By `python benchmarks/bench_conversion.py`: {LAYERS} layers, {UNITS} units, input "
        f"size {FEATURES}: {size / 2**20:.0f} MiB of float32 weights. {repeats} runs, "
        "each direction "
        "in its own fresh process, the copies and both conversions alternating in it. The "
        "targets hold the conversion with `verify=False` to the numpy transposed copy "
        "(`np.ascontiguousarray(w.T)`) and to the weights' size; the verified conversion "
        "(also running both models and the reference once) is beside it. Times are medians; "
        "peak memory is the largest of the runs.",
        "",
        "| conversion | time | transposed copy | time ratio | plain copy | peak memory "
        "| peak / weights | verified: time, peak / weights | targets |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for direction, result in results.items():

        def median(key: str, index: int, result: dict[str, object] = result) -> float:
            return statistics.median(run[index] for run in result[key])  # type: ignore[attr-defined]

        def largest(key: str, result: dict[str, object] = result) -> float:
            # The first call in the process included: later ones may reuse memory an
            # allocator kept from the call before (TensorFlow's does), which reads low.
            return max(peak for _, peak in result[key])  # type: ignore[attr-defined]

        seconds, copy_seconds = median("convert", 0), median("copy", 0)
        peak = largest("convert")
        ratio, memory = seconds / copy_seconds, peak / size
        verdict = (
            f"time {'met' if ratio <= TARGET else 'MISSED'}, "
            f"memory {'met' if memory <= TARGET else 'MISSED'} (≤ {TARGET:g}x each)"
        )
        name = direction.replace("_to_", " → ").replace("keras", "Keras")
        lines.append(
            f"| {name} | {seconds:.2f} s | {copy_seconds:.2f} s | {ratio:.2f}x | "
            f"{median('plain', 0):.2f} s | {peak / 2**20:.0f} MiB | {memory:.2f}x | "
            f"{median('verified', 0):.2f} s, {largest('verified') / size:.2f}x | {verdict} |"
        )
    if any("memory MISSED" in line for line in lines if line.startswith("| torch → Keras")):
        lines += [
            "",
            "Why torch → Keras misses memory: the kernels are created holding their weights "
            "(not zero-filled and then assigned), so what is above the weights is one "
            "weight's transposed copy and TensorFlow's tensor of it while its variable is "
            "created, and the first use of TensorFlow's allocator in the process.",
        ]
    return [*lines, ""]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        print(json.dumps(worker(sys.argv[2], int(sys.argv[3]))))
    else:
        for line in section(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5)):
            print(line)
