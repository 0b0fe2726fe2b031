"""Embedding tables quantized to 8 bits, read as float tables: the rewritten graph computes
what onnxruntime computes on the quantized one, exactly."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from xframe_bilstm.adapters.onnx.quantized import dequantized_model  # noqa: E402

TABLE = np.random.default_rng(0).integers(0, 256, (9, 4)).astype(np.uint8)


def _graph(scales: tuple[float, float]) -> onnx.ModelProto:
    """ids -> Gather of a uint8 table -> DequantizeLinear, and the same rows transposed ->
    DequantizeLinear, as onnxruntime's quantizer writes an embedding read twice."""
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["rows"]),
        helper.make_node("DequantizeLinear", ["rows", "scale_a", "zero"], ["y"]),
        helper.make_node("Transpose", ["rows"], ["moved"], perm=[1, 0, 2]),
        helper.make_node("DequantizeLinear", ["moved", "scale_b", "zero"], ["y_t"]),
    ]
    initializers = [
        numpy_helper.from_array(TABLE, "table"),
        numpy_helper.from_array(np.array(scales[0], np.float32), "scale_a"),
        numpy_helper.from_array(np.array(scales[1], np.float32), "scale_b"),
        numpy_helper.from_array(np.array(128, np.uint8), "zero"),
    ]
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "time"])
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "y_t")]
    graph = helper.make_graph(nodes, "g", [ids], outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, ids: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"ids": ids})


def test_a_table_dequantized_by_one_scale_is_gathered_as_floats():
    model = _graph((0.05, 0.05))
    floats = dequantized_model(model)
    assert "DequantizeLinear" not in {node.op_type for node in floats.graph.node}
    (gather,) = [node for node in floats.graph.node if node.op_type == "Gather"]
    table = {i.name: numpy_helper.to_array(i) for i in floats.graph.initializer}[gather.input[0]]
    assert table.dtype == np.float32
    ids = np.array([[0, 3, 8], [5, 5, 1]], np.int64)
    for expected, actual in zip(_run(model, ids), _run(floats, ids), strict=True):
        np.testing.assert_array_equal(actual, expected)


def test_a_table_dequantized_by_two_scales_stays_quantized():
    floats = dequantized_model(_graph((0.05, 0.1)))
    (gather,) = [node for node in floats.graph.node if node.op_type == "Gather"]
    assert gather.input[0] == "table"
    assert [n.op_type for n in floats.graph.node].count("DequantizeLinear") == 2
