"""The Keras model the keras-onnx column exports: built from any graph, taking the run's
inputs in the order the column feeds them, computing the reference."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")  # torch before tensorflow in one process
keras = pytest.importorskip("keras")

from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.factories import random_layer, random_stack  # noqa: E402
from xframe_bilstm.frameworks.keras_onnx import keras_model, rebuild_refusal  # noqa: E402
from xframe_bilstm.frameworks.onnx_feeds import run_inputs  # noqa: E402
from xframe_bilstm.graph import LayerRecord, ModelGraph  # noqa: E402
from xframe_bilstm.reference import reference_outputs  # noqa: E402
from xframe_bilstm.stack_graph import stack_graph  # noqa: E402


def _call(model, feeds):
    arrays = [np.asarray(a, i.dtype) for a, i in zip(feeds, model.inputs, strict=True)]
    outputs = model(arrays if len(arrays) > 1 else arrays[0], training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [np.asarray(o) for o in outputs]


def test_a_stack_takes_x_then_states_then_lengths() -> None:
    rng = np.random.default_rng(7)
    stack = random_stack(
        rng,
        "lstm",
        3,
        4,
        num_layers=2,
        direction="bidirectional",
        return_state=True,
        dtype=np.float32,
    )
    x = rng.standard_normal((3, 5, 3)).astype(np.float32)
    states = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(8)]
    lengths = np.array([5, 2, 3], np.int32)
    model = keras_model(stack_graph(stack), True, True)
    assert model.inputs[0].name == "x" and model.inputs[-1].name == "lengths"
    actual = _call(model, run_inputs(stack_graph(stack), x, states, lengths))
    expected = reference_outputs(stack, x, initial_states=states, lengths=lengths)
    atol = derived_tolerance(stack, x, initial_states=states)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, atol=atol, rtol=0)
    assert rebuild_refusal(stack_graph(stack)) is None


def test_a_whole_model_is_its_keras_rebuild() -> None:
    rng = np.random.default_rng(8)
    layer = random_layer(rng, "gru", 3, 4, dtype=np.float32)
    flags = {"return_sequences": True, "time_major": False, "unroll": False}
    graph = ModelGraph(
        "masked",
        (
            LayerRecord("x", "input", "InputLayer", options={"shape": (None, 3), "dtype": "f"}),
            LayerRecord("masking", "masking", "Masking", ("x",), {"mask_value": 0.0}),
            LayerRecord("rnn", "recurrent", "GRU", ("masking",), flags, recurrent=layer),
        ),
        inputs=("x",),
        outputs=("rnn",),
    )
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    x[1, 3:] = 0.0  # masked steps
    (actual,) = _call(keras_model(graph, False, False), run_inputs(graph, x, None, None))
    (expected,) = reference_outputs(graph, x)
    np.testing.assert_allclose(actual, expected, atol=derived_tolerance(graph, x), rtol=0)
    assert rebuild_refusal(graph) is None
