"""Converting a 4-layer, 1024-unit Bidirectional LSTM: time and peak memory.

Each direction (Keras → torch, torch → Keras) runs in a fresh process, after a small
conversion that starts both frameworks, with verification off (verifying runs both models
once, which is not conversion). Against it, in the same
process and alternating: a plain numpy copy of the same weights. Peak memory is the highest
resident set during the call above what was resident before it (Linux's VmHWM, reset
through /proc/self/clear_refs before each call).

    python benchmarks/bench_conversion.py --worker keras_to_torch 5   # one direction, JSON
"""

from __future__ import annotations

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
TARGET = 2.0


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} is not in /proc/self/status")


def _timed_peak(call: Callable[[], Any]) -> tuple[float, int]:
    """Seconds and peak extra resident bytes of ``call()``; its result is dropped."""
    gc.collect()
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

        def convert() -> Any:
            return keras_to_torch(source, verify=False)
    else:
        source = module
        arrays = [p.detach().numpy() for p in module.parameters()]

        def convert() -> Any:
            return torch_to_keras(source, verify=False)

    size = sum(a.nbytes for a in arrays)
    copies, conversions = [], []
    for _ in range(repeats):
        copies.append(_timed_peak(lambda: [a.copy() for a in arrays]))
        conversions.append(_timed_peak(convert))
    return {"bytes": size, "copy": copies, "convert": conversions}


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
    lines = [
        "## Converting a 4-layer 1024-unit Bidirectional LSTM",
        "",
        f"{LAYERS} layers, {UNITS} units, input size {FEATURES}: {size / 2**20:.0f} MiB of "
        "float32 weights. `verify=False`; medians, each direction in its own fresh process.",
        "",
        "| conversion | time | numpy copy of the weights | time ratio | peak memory "
        "| peak / weights | targets |",
        "|---|---|---|---|---|---|---|",
    ]
    for direction, result in results.items():
        convert = result["convert"]
        copy = result["copy"]
        seconds = statistics.median(s for s, _ in convert)  # type: ignore[attr-defined]
        copy_seconds = statistics.median(s for s, _ in copy)  # type: ignore[attr-defined]
        peak = statistics.median(p for _, p in convert)  # type: ignore[attr-defined]
        ratio, memory = seconds / copy_seconds, peak / size
        verdict = (
            f"time {'met' if ratio <= TARGET else 'MISSED'}, "
            f"memory {'met' if memory <= TARGET else 'MISSED'} (≤ {TARGET:g}x each)"
        )
        name = direction.replace("_to_", " → ").replace("keras", "Keras")
        lines.append(
            f"| {name} | {seconds:.2f} s | {copy_seconds:.2f} s | {ratio:.1f}x | "
            f"{peak / 2**20:.0f} MiB | {memory:.2f}x | {verdict} |"
        )
    return [*lines, ""]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        print(json.dumps(worker(sys.argv[2], int(sys.argv[3]))))
    else:
        for line in section(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5)):
            print(line)
