"""Feeding an ONNX graph from a run's inputs: ours in order, a graph as given by meaning
when it is a recurrent stack, else the model's inputs in order."""

from __future__ import annotations

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm.adapters.onnx import export_graph  # noqa: E402
from xframe_bilstm.canonical import RecurrentStack  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.factories import random_layer  # noqa: E402
from xframe_bilstm.frameworks.base import RunSpec  # noqa: E402
from xframe_bilstm.frameworks.onnx_feeds import (  # noqa: E402
    ModelFeeds,
    RecurrentFeeds,
    graph_feeder,
    graph_lengths,
    run_inputs,
)
from xframe_bilstm.frameworks.onnx_session import run_model  # noqa: E402
from xframe_bilstm.graph import LayerRecord, ModelGraph  # noqa: E402
from xframe_bilstm.reference import reference_outputs  # noqa: E402
from xframe_bilstm.sources import read_source  # noqa: E402
from xframe_bilstm.stack_graph import as_graph, stack_graph  # noqa: E402

_CPU = RunSpec("onnxruntime", "cpu", "float32", False)


def _two_input_model() -> ModelGraph:
    layer = random_layer(np.random.default_rng(1), "simple_rnn", 6, 2, dtype=np.float32)
    flags = {"return_sequences": True, "time_major": False, "unroll": False}
    shape = {"shape": (None, 3), "dtype": "f"}
    return ModelGraph(
        "two",
        (
            LayerRecord("a", "input", "InputLayer", options=shape),
            LayerRecord("b", "input", "InputLayer", options=shape),
            LayerRecord(
                "both",
                "concatenate",
                "Concatenate",
                ("a", "b"),
                {"axis": -1, "mask_combine": "any"},
            ),
            LayerRecord("rnn", "recurrent", "SimpleRNN", ("both",), flags, recurrent=layer),
        ),
        inputs=("a", "b"),
        outputs=("rnn",),
    )


def test_our_exports_take_the_model_inputs_then_states_then_lengths() -> None:
    layer = random_layer(np.random.default_rng(0), "lstm", 1, 4)
    stack = stack_graph(RecurrentStack((layer,)))
    x, s, lengths = np.zeros((2, 3, 1)), [np.ones((2, 4))] * 2, np.array([3, 1])
    assert [a.shape for a in run_inputs(stack, x, s, lengths)] == [(2, 3, 1), (2, 4), (2, 4), (2,)]
    # A whole model masks padding by its inputs' values: the lengths are no input of it.
    model = _two_input_model()
    assert len(run_inputs(model, (x, x), None, lengths)) == 2
    assert graph_lengths(model, lengths) is None and graph_lengths(stack, lengths) is lengths


def test_a_time_major_torch_export_is_fed_by_meaning() -> None:
    """torch's nn.GRU graph takes (T, B, D) and h0 (L*D, B, H): fed from a batch-major run."""
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 4, bidirectional=True)
    buffer = io.BytesIO()
    x0 = torch.zeros(5, 2, 3)
    torch.onnx.export(gru, (x0,), buffer, input_names=["x"], dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    reading = read_source(proto).reading
    feeder = graph_feeder(proto, as_graph(reading))
    assert isinstance(feeder, RecurrentFeeds) and feeder.time_major
    x = np.random.default_rng(2).standard_normal((2, 5, 3)).astype(np.float32)
    outputs, _ = run_model(
        proto, feeder.feeds(x, None, None), _CPU, initial_states=None, lengths=None
    )
    (expected,) = reference_outputs(reading, x)[:1]
    np.testing.assert_allclose(
        np.swapaxes(outputs[0], 0, 1).reshape(expected.shape),
        expected,
        atol=derived_tolerance(reading, x),
        rtol=0,
    )


def test_a_whole_model_graph_takes_its_inputs_in_order() -> None:
    graph = _two_input_model()
    model = export_graph(graph, opset=17).model
    feeder = graph_feeder(model, graph)
    assert isinstance(feeder, ModelFeeds) and feeder.dtype == "float32"
    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal((2, 4, 3)).astype(np.float32) for _ in range(2))
    (actual,), _ = run_model(
        model, feeder.feeds((a, b), None, np.array([4, 2])), _CPU, initial_states=None, lengths=None
    )
    (expected,) = reference_outputs(graph, (a, b))
    np.testing.assert_allclose(actual, expected, atol=derived_tolerance(graph, (a, b)), rtol=0)
    # Each array goes to its own input: fed the other way round, the model computes else.
    swapped_feeds = feeder.feeds((b, a), None, None)
    (swapped,), _ = run_model(model, swapped_feeds, _CPU, initial_states=None, lengths=None)
    assert np.max(np.abs(swapped - expected)) > 1e-2


def test_a_graph_with_other_inputs_than_the_model_is_refused_naming_both() -> None:
    graph = _two_input_model()
    one_input = ModelGraph(
        "one", graph.layers[:1], inputs=("a",), outputs=("a",), source="a one-input model"
    )
    model = export_graph(graph, opset=17).model
    with pytest.raises(UnsupportedFeatureError, match=r"takes 2 input\(s\) \['a', 'b'\]"):
        graph_feeder(model, one_input)
