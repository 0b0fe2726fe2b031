"""The one export entry: a stack's graph exports as canonical_to_onnx, any other as
graph_to_onnx, each refused by name where it cannot."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm.adapters.onnx import (  # noqa: E402
    canonical_to_onnx,
    export_graph,
    export_refusal,
    graph_to_onnx,
    run_onnxruntime,
)
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.factories import random_layer, random_stack  # noqa: E402
from xframe_bilstm.graph import LayerRecord, ModelGraph  # noqa: E402
from xframe_bilstm.reference import reference_outputs  # noqa: E402
from xframe_bilstm.stack_graph import stack_graph  # noqa: E402


def _stack(**options: object):
    rng = np.random.default_rng(3)
    return random_stack(
        rng, "lstm", 3, 4, num_layers=2, direction="bidirectional", dtype=np.float32, **options
    )


def _masked_model() -> ModelGraph:
    rng = np.random.default_rng(4)
    layer = random_layer(rng, "gru", 3, 4, dtype=np.float32)
    options = {"return_sequences": True, "time_major": False, "unroll": False}
    return ModelGraph(
        "masked",
        (
            LayerRecord("x", "input", "InputLayer", options={"shape": (None, 3), "dtype": "f"}),
            LayerRecord("masking", "masking", "Masking", ("x",), {"mask_value": 0.0}),
            LayerRecord("rnn", "recurrent", "GRU", ("masking",), options, recurrent=layer),
        ),
        inputs=("x",),
        outputs=("rnn",),
    )


@pytest.mark.parametrize("with_states", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_a_stack_graph_exports_as_its_layers_converter_does(with_states, with_lengths) -> None:
    stack = _stack(return_state=True)
    options = {"with_initial_states": with_states, "with_lengths": with_lengths}
    export = export_graph(stack_graph(stack), opset=17, **options)
    assert export.exporter == "canonical_to_onnx"
    expected = canonical_to_onnx(stack, opset=17, **options)
    assert export.model.SerializeToString() == expected.SerializeToString()


def test_the_stack_export_computes_the_reference_with_states_and_lengths() -> None:
    stack = _stack(return_state=True)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 6, 3)).astype(np.float32)
    states = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(8)]
    lengths = np.array([6, 2, 4], np.int32)
    export = export_graph(stack_graph(stack), opset=17, with_initial_states=True, with_lengths=True)
    actual = run_onnxruntime(export.model, x, initial_states=states, lengths=lengths)
    expected = reference_outputs(stack, x, initial_states=states, lengths=lengths)
    atol = derived_tolerance(stack, x, initial_states=states)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, atol=atol, rtol=0)


def test_any_other_graph_exports_as_a_whole_model() -> None:
    graph = _masked_model()
    export = export_graph(graph, opset=17)
    assert export.exporter == "graph_to_onnx"
    assert export.model.SerializeToString() == graph_to_onnx(graph, opset=17).SerializeToString()
    assert [i.name for i in export.model.graph.input] == ["x"]


def test_a_whole_model_refuses_initial_states_and_lengths_by_name() -> None:
    with pytest.raises(UnsupportedFeatureError, match=r"with_lengths=True: .* is a whole model"):
        export_graph(_masked_model(), opset=17, with_lengths=True)


def test_refusals_follow_the_exporter_of_the_graph() -> None:
    stack = _stack()
    assert export_refusal(stack_graph(stack)) is None
    selu = random_stack(np.random.default_rng(6), "gru", 3, 4, activation="selu")
    assert "selu" in (export_refusal(stack_graph(selu)) or "")
    assert export_refusal(_masked_model()) is None
    assert "opset=11" in (export_refusal(_masked_model(), 11) or "")
