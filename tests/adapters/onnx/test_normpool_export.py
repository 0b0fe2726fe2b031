"""Normalization and pooling layers exported to ONNX, run on onnxruntime, against the
real Keras layers, at the oldest whole-model opset and at the newest."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
keras = pytest.importorskip("keras")

from xframe_bilstm.adapters.onnx import graph_to_onnx, newest_runtime_opset  # noqa: E402
from xframe_bilstm.adapters.onnx.graph_export import GRAPH_OPSET  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.inputs import example_inputs  # noqa: E402
from xframe_bilstm.models.live import graph_from_keras  # noqa: E402

from ... import normpool_models  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.onnx]
CASES = sorted(normpool_models.layer_cases(keras))


def _run(model: object, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("opset", [GRAPH_OPSET, "newest"])
@pytest.mark.parametrize("name", CASES)
def test_an_exported_layer_on_onnxruntime_matches_keras(name: str, opset: object) -> None:
    model = normpool_models.layer_model(keras, name)
    graph = graph_from_keras(model)
    inputs = example_inputs(graph, batch=3, steps=7, seed=7)
    exported = graph_to_onnx(
        graph, opset=newest_runtime_opset() if opset == "newest" else int(opset)
    )
    onnx.checker.check_model(exported, full_check=True)
    expected = np.asarray(model(inputs[0]))
    tolerance = derived_tolerance(graph, inputs)
    np.testing.assert_allclose(_run(exported, inputs[0]), expected, rtol=0, atol=tolerance)


def test_the_operators_are_the_standard_ones() -> None:
    graph = graph_from_keras(normpool_models.image_model(keras))
    ops = {node.op_type for node in graph_to_onnx(graph, opset=17).graph.node}
    assert {"BatchNormalization", "MaxPool", "AveragePool", "ReduceMean"} <= ops
    sequence = graph_from_keras(normpool_models.sequence_model(keras))
    assert "LayerNormalization" in {n.op_type for n in graph_to_onnx(sequence, opset=17).graph.node}
    older = {n.op_type for n in graph_to_onnx(sequence, opset=13).graph.node}
    assert "LayerNormalization" not in older and "ReduceMean" in older  # its definition
