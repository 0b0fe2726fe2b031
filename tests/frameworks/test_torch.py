"""The torch framework in a fresh process: its first run records the kernel that ran without
importing torch's compiler stack or its symbolic shapes (seconds of a user's first compare).
Given a stack or the graph of that stack, it runs and differentiates the one same module."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xframe_bilstm.factories import random_stack  # noqa: E402
from xframe_bilstm.frameworks import RunSpec, TorchFramework  # noqa: E402
from xframe_bilstm.reference import reference_gradients, reference_outputs  # noqa: E402
from xframe_bilstm.stack_graph import stack_graph  # noqa: E402

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


def test_a_stack_and_its_graph_run_and_differentiate_as_one_module() -> None:
    rng = np.random.default_rng(2)
    stack = random_stack(rng, "gru", 3, 4, num_layers=2, direction="bidirectional")
    x = rng.standard_normal((2, 6, 3))
    states = [rng.standard_normal((2, 4)) for _ in range(4)]
    given = {"initial_states": states, "lengths": np.array([6, 3])}
    spec = RunSpec("torch", "cpu", "float64")
    framework = TorchFramework()
    by_stack, settings = framework.run(stack, x, spec, **given)
    by_graph, graph_settings = framework.run(stack_graph(stack), x, spec, **given)
    assert graph_settings == settings  # the same modules, kernel and switches
    for got, same, want in zip(by_graph, by_stack, reference_outputs(stack, x, **given)):
        np.testing.assert_array_equal(got, same)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    cotangents = [rng.standard_normal(a.shape) for a in by_stack]
    grads = framework.gradients(stack_graph(stack), x, spec, cotangents, **given)
    want = reference_gradients(stack, x, cotangents, **given)
    assert set(grads.arrays) == {"inputs", *(f"initial_states[{i}]" for i in range(4))} | {
        f"layers[{i}].{side}.{field}"
        for i in range(2)
        for side in ("forward", "backward")
        for field in ("kernel", "recurrent_kernel", "bias")
    }
    np.testing.assert_allclose(grads.arrays["inputs"], want.inputs, rtol=0, atol=1e-10)
    for index, state in enumerate(want.initial_states):
        np.testing.assert_allclose(
            grads.arrays[f"initial_states[{index}]"], state, rtol=0, atol=1e-10
        )
    assert grads.native["layers[0].forward.kernel"] == ("torch rnns.0.weight_ih_l0",)
