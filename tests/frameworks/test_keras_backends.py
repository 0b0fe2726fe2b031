"""Keras on its JAX and PyTorch backends (``keras-jax``, ``keras-torch``), each in a process
of its own, against the reference and the Keras original."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from xframe_bilstm import compare
from xframe_bilstm.comparison import derived_tolerance
from xframe_bilstm.errors import UnsupportedFeatureError
from xframe_bilstm.factories import random_stack
from xframe_bilstm.frameworks import FRAMEWORKS, RunSpec
from xframe_bilstm.reference import run_reference

pytest.importorskip("torch")
keras = pytest.importorskip("keras")

COLUMNS = [
    pytest.param(
        "keras-jax",
        marks=pytest.mark.skipif(
            not FRAMEWORKS["keras-jax"].available(), reason="pip install '.[keras-jax]'"
        ),
    ),
    "keras-torch",
]
BACKEND = {"keras-jax": "jax", "keras-torch": "torch"}


def _failures(report) -> str:
    return "\n".join([*report.lines(), *(f"{r.label}: {r.error}" for r in report.runs)])


@pytest.mark.parametrize("column", COLUMNS)
def test_a_bidirectional_lstm_agrees_in_float32_and_float64_is_refused(column: str) -> None:
    layer = keras.layers.Bidirectional(keras.layers.LSTM(5, return_sequences=True))
    layer(np.zeros((1, 4, 3), "float32"))
    report = compare(layer, frameworks=[column], steps=7)
    assert report, _failures(report)
    run = next(run for run in report.runs if run.label == f"{column}[cpu,float32]")
    assert run.settings["keras_backend"] == BACKEND[column]
    assert f"KERAS_BACKEND={BACKEND[column]}" in str(run.settings["process"])
    assert str(run.settings["device"]).startswith("cpu")
    assert BACKEND[column] in report.versions
    with pytest.raises(
        UnsupportedFeatureError, match=rf"\['float64'\] not offered by \['{column}'\]"
    ):
        compare(layer, frameworks=[column], dtypes=["float64"], steps=7)


@pytest.mark.parametrize("column", COLUMNS)
def test_a_gru_model_without_reset_after_runs_rebuilt_and_as_the_original(column: str) -> None:
    model = keras.Sequential(
        [keras.Input((None, 3)), keras.layers.GRU(4, reset_after=False, return_sequences=True)]
    )
    report = compare(model, frameworks=[column], steps=6, batch=3, lengths=[6, 2, 4])
    assert report, _failures(report)
    labels = [run.label for run in report.runs]
    assert f"{column}[cpu,float32]" in labels
    original = next(r for r in report.runs if r.label == f"{column}[cpu,float32]@original")
    assert "loaded from .keras" in str(original.settings["model"])


@pytest.mark.parametrize("column", COLUMNS)
def test_a_masked_tagger_agrees_on_its_tokens(column: str) -> None:
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(12, 4, mask_zero=True),
            keras.layers.Bidirectional(keras.layers.LSTM(5, return_sequences=True)),
            keras.layers.Dense(3),
        ]
    )
    tokens = np.array([[3, 1, 4, 0, 0], [1, 5, 9, 2, 6]], np.int32)
    report = compare(model, frameworks=[column], inputs=tokens)
    assert report, _failures(report)
    assert {f"{column}[cpu,float32]", f"{column}[cpu,float32]@original"} <= {
        r.label for r in report.runs
    }


@pytest.mark.parametrize("column", COLUMNS)
def test_a_perturbed_weight_and_a_too_tight_tolerance_fail(column: str) -> None:
    from xframe_bilstm.factories import random_stack

    stack = random_stack(np.random.default_rng(3), "lstm", 3, 4)
    x = np.random.default_rng(4).standard_normal((2, 6, 3))
    layer = stack.layers[0]
    first = layer.weights[0]
    nudged = dataclasses.replace(first, kernel=first.kernel + 1e-3)
    perturbed = dataclasses.replace(
        stack, layers=(dataclasses.replace(layer, weights=(nudged, *layer.weights[1:])),)
    )
    framework = FRAMEWORKS[column]()
    spec = RunSpec(column, "cpu", "float32")
    (got, *_), _ = framework.run(perturbed, x, spec, initial_states=None, lengths=None)
    (want, *_) = run_reference(stack, x)
    assert np.abs(got - want).max() > derived_tolerance(stack, x)
    tight = compare(stack, frameworks=[column], inputs=x, rtol=0.0, atol=1e-15)
    assert not tight
    assert any(line.startswith(f"FAILED | {column}[cpu,float32]") for line in tight.lines())


def test_deployment_columns_run_when_asked_for_and_are_refused_when_missing() -> None:
    """They start a process or convert the model, so "auto" leaves them to be asked for;
    asked for where their extra is missing, they are refused naming it."""
    from xframe_bilstm.planning import plan_runs

    stack = random_stack(np.random.default_rng(0), "gru", 2, 3)
    planned = {spec.framework for spec, _ in plan_runs(stack, "auto", "auto", ["float32"], False)}
    assert not planned & {"keras-jax", "keras-torch", "tflite"}
    assert "torch" in planned
    # A process in which jax and ai_edge_litert cannot be imported (None in sys.modules:
    # find_spec answers None), as where they are not installed.
    code = (
        "import sys\n"
        "sys.modules['jax'] = sys.modules['ai_edge_litert'] = None\n"
        "import numpy as np\n"
        "from xframe_bilstm import compare\n"
        "from xframe_bilstm.errors import FrameworkUnavailableError\n"
        "from xframe_bilstm.factories import random_stack\n"
        "stack = random_stack(np.random.default_rng(0), 'gru', 2, 3)\n"
        "print(compare(stack, frameworks=['torch'], steps=3).left_out)\n"
        "for name in ('keras-jax', 'tflite'):\n"
        "    try:\n"
        "        compare(stack, frameworks=[name], steps=3)\n"
        "    except FrameworkUnavailableError as error:\n"
        "        print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "()"
    assert "framework 'keras-jax' is not installed" in lines[1]
    assert "xframe_bilstm[keras-jax]" in lines[1]
    assert "xframe_bilstm[tflite]" in lines[2]


def test_the_saved_original_is_removed_with_its_framework() -> None:
    import gc
    import os

    from xframe_bilstm.frameworks.keras_backends import KerasFileBackendFramework

    model = keras.Sequential([keras.Input((None, 3)), keras.layers.SimpleRNN(2)])
    column = KerasFileBackendFramework("torch", lambda: model)
    from xframe_bilstm.sources import read_source

    graph = read_source(model).reading
    x = np.ones((1, 4, 3), "float32")
    spec = RunSpec("keras-torch", "cpu", "float32", subject="original")
    outputs, _ = column.run(graph, x, spec, initial_states=None, lengths=None)
    np.testing.assert_allclose(outputs[0], model(x).numpy(), rtol=1e-5, atol=1e-6)
    folder = os.path.dirname(column._file or "")
    assert os.path.exists(folder)
    del column
    gc.collect()
    assert not os.path.exists(folder)
