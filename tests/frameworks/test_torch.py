"""The torch framework in a fresh process: its first run records the kernel that ran without
importing torch's compiler stack or its symbolic shapes (seconds of a user's first compare)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

# Modules a plain eager forward never needs: the compiler (torch._dynamo, ~1.5 s to import)
# and sympy, which torch's symbolic shapes import (~0.5 s).
_HEAVY = ("torch._dynamo", "torch.fx.experimental.symbolic_shapes", "sympy")

_FIRST_RUN = """
import json, sys
import numpy as np
import torch
from xframe_bilstm import compare
from xframe_bilstm.factories import random_stack

stack = random_stack(np.random.default_rng(0), "lstm", 5, 6, direction="bidirectional")
report = compare(stack, frameworks=["torch"], paths=sys.argv[1:], steps=7)
print(json.dumps({
    "passed": bool(report),
    "kernels": {run.label: run.kernel for run in report.runs},
    "imported": [name for name in HEAVY if name in sys.modules],
}))
"""


def _first_run(*paths: str) -> dict:
    code = f"HEAVY = {_HEAVY!r}\n{_FIRST_RUN}"
    result = subprocess.run(
        [sys.executable, "-c", code, *paths],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_first_run_records_the_kernel_without_the_compiler_stack() -> None:
    paths = ["mkldnn-off"] if torch.backends.mkldnn.is_available() else []
    first = _first_run(*paths)
    assert first["passed"]
    assert first["imported"] == [], f"a first torch run imported {first['imported']}"
    kernels = first["kernels"]
    # What the dispatcher saw, as with the compiler imported (tests/frameworks/
    # test_kernel_paths.py): oneDNN's LSTM kernel by default, ATen's loop without it.
    if torch.backends.mkldnn.is_available():
        assert kernels["torch[cpu,float32]"] == "oneDNN (mkldnn) LSTM"
        assert kernels["torch[cpu,float32,mkldnn-off]"].startswith("ATen loop")
    else:
        assert kernels["torch[cpu,float32]"].startswith("ATen loop")
