#!/usr/bin/env python3
"""How long porting a big Keras file takes, and how much memory, next to copying its weights.

The file: a Keras 3 ``.keras`` model of 4 ``Bidirectional(LSTM(1024, return_sequences=True))``
layers on 1024 input features (92 M float32 weights, 369 MB). Each measurement runs in a
fresh process that imports what it needs first, then:

- **copy**: reads every weight array of the file with h5py into numpy and wraps it as a
  torch tensor (no conversion, no checks): the least any port has to do;
- **port**: ``keras_to_torch(path, verify=False)``: reads, checks the shapes against the
  configuration, converts to the canonical form and fills the torch modules;
- **port + verify**: ``keras_to_torch(path)``, checked against the model as
  ``keras.saving.load_model`` loads and runs it; TensorFlow is imported inside the step, as
  a user's first port imports it;
- **port + reference check**: the same in a process where TensorFlow and Keras cannot be
  imported, so the check falls back to the float64 reference reading of the file.

Time is wall time of that step; memory is the process's peak resident size during it (a
thread polls it every 2 ms), less its resident size before it, divided by the size of the
weights. Targets: the port takes at
most 2x the copy's time and at most 2x the weights' size.

    python benchmarks/port_speed.py            # writes benchmarks/results/port_speed.md
    python benchmarks/port_speed.py --units 64 # a quick run (not written to results)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fresh_process import ROOT, environment

RESULTS = ROOT / "benchmarks" / "results" / "port_speed.md"
REPEATS = 3

MEASURE = r"""
import json, sys, time
sys.path[:0] = [{root!r}, {benchmarks!r}]
import h5py, numpy as np, torch
from fresh_process import Peak, rss
from xframe_bilstm import keras_to_torch
from xframe_bilstm.adapters import torch as _torch_adapter
from xframe_bilstm.keras_files.archive import _weights_file
from xframe_bilstm.models import port as _port, to_torch as _to_torch

def copy(path):
    tensors = []
    with _weights_file(path, False) as (weights, _):
        weights.visititems(lambda name, item: tensors.append(torch.from_numpy(item[()]))
                           if hasattr(item, "shape") else None)
    return tensors

path, what = sys.argv[1], sys.argv[2]
if what == "reference":  # no Keras to load the file: the check runs on the reference
    for name in ("tensorflow", "keras", "tf_keras"):
        sys.modules[name] = None
before = rss()
with Peak() as peak:
    start = time.perf_counter()
    if what == "copy":
        result = copy(path)
    else:
        result = keras_to_torch(path, verify=what != "port")
    seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "peak": max(peak.peak - before, 0)}}))
"""


def build(path: Path, units: int, layers: int) -> int:
    """Save the model; return the size of its weights in bytes."""
    sys.path.insert(0, str(ROOT))
    from xframe_bilstm._imports import require

    keras = require("keras")  # imports torch first, as TensorFlow needs

    keras.utils.set_random_seed(0)
    stack = [keras.Input((None, units))]
    for _ in range(layers):
        lstm = keras.layers.LSTM(
            units, return_sequences=True, recurrent_initializer="glorot_uniform"
        )
        stack.append(keras.layers.Bidirectional(lstm))
    model = keras.Sequential(stack)
    model.save(path)
    return sum(weight.nbytes for weight in model.get_weights())


def measure(path: Path, what: str, env: dict[str, str]) -> dict[str, float]:
    code = MEASURE.format(root=str(ROOT), benchmarks=str(ROOT / "benchmarks"))
    output = subprocess.run(
        [sys.executable, "-c", code, str(path), what],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
        env=env,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bilstm.keras"
        size = build(path, args.units, args.layers)
        env = environment(Path(directory) / "bytecode")
        runs: dict[str, list[dict[str, float]]] = {
            "copy": [],
            "port": [],
            "verify": [],
            "reference": [],
        }
        for _ in range(REPEATS):
            for what in runs:  # alternate, so machine load affects all alike
                runs[what].append(measure(path, what, env))

    def seconds(what: str) -> float:
        return statistics.median(run["seconds"] for run in runs[what])

    def memory(what: str) -> float:
        return statistics.median(run["peak"] for run in runs[what]) / size

    import torch

    lines = [
        "# Port speed and memory",
        "",
        f"Produced by `python benchmarks/port_speed.py` on {platform.machine()} with "
        f"{torch.get_num_threads()} torch threads (python {platform.python_version()}, "
        f"torch {torch.__version__}); a .keras file of {args.layers} Bidirectional "
        f"LSTM({args.units}) layers, {size / 1e6:.0f} MB of float32 weights; medians of "
        f"{REPEATS} fresh processes.",
        "",
        "| step | time | time / copy | peak memory / weights |",
        "|---|---|---|---|",
    ]
    labels = {
        "copy": "copy the weights (h5py to torch tensors)",
        "port": "`keras_to_torch(path, verify=False)`",
        "verify": "`keras_to_torch(path)`, checked against Keras (imports TensorFlow)",
        "reference": "`keras_to_torch(path)` without TensorFlow (the reference check)",
    }
    for what, label in labels.items():
        lines.append(
            f"| {label} | {seconds(what):.2f} s | {seconds(what) / seconds('copy'):.2f} | "
            f"{memory(what):.2f} |"
        )
    lines += ["", "Targets: port ≤ 2x the copy's time, peak memory ≤ 2x the weights."]
    missed = []
    if seconds("port") > 2 * seconds("copy"):
        missed.append(f"time by {seconds('port') / seconds('copy') / 2 - 1:.0%}")
    if memory("port") > 2:
        missed.append(f"memory by {memory('port') / 2 - 1:.0%}")
    if missed:
        lines += [
            "",
            f"The port misses {' and '.join(missed)}. Time: each weight is copied into its torch "
            "parameter through a transpose (the canonical (D, G·H) becomes torch's (G·H, D)), "
            "a strided copy several times slower than the plain read it is measured against. "
            "Memory: at the peak two copies of the weights are resident by design, the arrays "
            "read from the file (the canonical form, which the reference check runs on) and "
            "the torch parameters; the rest is the interpreter's own growth during the call. "
            "The reference check adds its float32 and float64 runs. The check against Keras "
            "adds TensorFlow's import and a third copy of the weights, the model Keras loads.",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.units == 1024 and args.layers == 4:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
