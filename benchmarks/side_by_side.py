#!/usr/bin/env python3
"""This checkout against another one, side by side: import time, ``compare()`` of a stack
and of a whole model, each in fresh processes, the two checkouts alternating so that
machine load affects them alike.

    git worktree add /tmp/before <commit>
    python benchmarks/side_by_side.py /tmp/before --out benchmarks/results/one_path.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Each case prints {"seconds": ...}: the part it measures, timed inside a fresh interpreter.
_SETUP = """
import json, sys, time
sys.path.insert(0, {root!r})
"""
CASES = {
    "import xframe_bilstm": """
start = time.perf_counter()
import xframe_bilstm
print(json.dumps({"seconds": time.perf_counter() - start}))
""",
    "compare(), BiLSTM stack, T=100: reference + torch + keras (second call)": """
import numpy as np, torch, keras
from xframe_bilstm import compare
keras.utils.set_random_seed(0)
layer = keras.layers.Bidirectional(keras.layers.LSTM(16, return_sequences=True))
layer(np.zeros((4, 100, 8), np.float32))
compare(layer, frameworks=["torch", "keras"], steps=100)
start = time.perf_counter()
compare(layer, frameworks=["torch", "keras"], steps=100)
print(json.dumps({"seconds": time.perf_counter() - start}))
""",
    "compare(), whole model file (Embedding, BiGRU, Dense): reference + torch (second call)": """
import numpy as np, torch, keras, tempfile, os
from xframe_bilstm import compare
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((None,), dtype="int32"),
    keras.layers.Embedding(50, 8, mask_zero=True),
    keras.layers.Bidirectional(keras.layers.GRU(16, return_sequences=True)),
    keras.layers.Dense(5)])
path = os.path.join(tempfile.mkdtemp(), "tagger.keras")
model.save(path)
compare(path, frameworks=["torch"], lengths=[20, 12, 7, 3])
start = time.perf_counter()
compare(path, frameworks=["torch"], lengths=[20, 12, 7, 3])
print(json.dumps({"seconds": time.perf_counter() - start}))
""",
}


def run(checkout: Path, body: str) -> float:
    code = _SETUP.format(root=str(checkout)) + body
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=checkout
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="the checkout to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    for name, body in CASES.items():
        times: dict[str, list[float]] = {"other": [], "this": []}
        for _ in range(args.repeats):
            times["other"].append(run(args.other.resolve(), body))
            times["this"].append(run(ROOT, body))
        other, this = (statistics.median(times[k]) for k in ("other", "this"))
        rows.append(
            f"| {name} | {other * 1000:.0f} ms | {this * 1000:.0f} ms | {this / other:.2f} |"
        )
    lines = [
        f"| what (median of {args.repeats}, fresh processes) | {args.other.name} | this | ratio |",
        "|---|---|---|---|",
        *rows,
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
