"""Sizes computed in a graph run as numbers: ``Shape``, ``Gather``, ``Concat`` feeding a
``Reshape``, so that ``torch.export`` captures the interpreter's module at plain sizes.
Expected values come from onnxruntime on the graph."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from xframe_bilstm.adapters.onnx import onnx_module  # noqa: E402
from xframe_bilstm.adapters.onnx.static_values import as_tensors, static_constant  # noqa: E402


def _flatten_time_graph(opset: int) -> onnx.ModelProto:
    """(B, T, C, F) -> (B, T, C * F), its target shape computed from ``Shape``, as
    torch.onnx writes ``x.reshape(b, t, -1)``; the opset picks Unsqueeze's axes form."""
    axes = [helper.make_node("Constant", [], ["axes"], value=onnx.numpy_helper.from_array(
        np.array([0], np.int64)))] if opset >= 13 else []  # fmt: skip
    unsqueeze = {"axes": [0]} if opset < 13 else {}
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Constant", [], ["zero"], value_int=0),
        helper.make_node("Constant", [], ["one"], value_int=1),
        helper.make_node("Gather", ["shape", "zero"], ["b"], axis=0),
        helper.make_node("Gather", ["shape", "one"], ["t"], axis=0),
        *axes,
        helper.make_node("Unsqueeze", ["b", *(["axes"] if axes else [])], ["b1"], **unsqueeze),
        helper.make_node("Unsqueeze", ["t", *(["axes"] if axes else [])], ["t1"], **unsqueeze),
        helper.make_node("Constant", [], ["rest"], value_ints=[-1]),
        helper.make_node("Concat", ["b1", "t1", "rest"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "flatten",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [11, 17])
def test_sizes_are_numbers_and_the_module_captures(opset: int) -> None:
    model = _flatten_time_graph(opset)
    module = onnx_module(model)
    x = np.random.default_rng(0).standard_normal((2, 5, 3, 4)).astype("float32")
    (expected,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    np.testing.assert_array_equal(module(torch.from_numpy(x)).numpy(), expected)
    values = module.run_graph({"x": torch.from_numpy(x)})
    assert isinstance(values["target"], np.ndarray)
    np.testing.assert_array_equal(values["target"], [2, 5, -1])
    exported = torch.export.export(module, (torch.from_numpy(x),))  # no data-dependent size
    reshapes = (torch.ops.aten.view.default, torch.ops.aten.reshape.default)
    views = [n for n in exported.graph.nodes if n.target in reshapes]
    assert [list(n.args[1]) for n in views] == [[2, 5, -1]]


def test_only_small_integer_constants_stay_numbers() -> None:
    assert static_constant(np.array([0, -1], np.int64))
    assert static_constant(np.array(True))
    assert not static_constant(np.zeros((2, 3), np.int8))  # int8 weights are data
    assert not static_constant(np.array([0.5], np.float32))


def test_a_number_becomes_a_tensor_where_the_operator_reads_data() -> None:
    shape, data = np.array([2, 3]), torch.zeros(6)
    reshape = as_tensors("Reshape", [data, shape], torch.from_numpy)
    assert reshape[1] is shape  # read as sizes
    added = as_tensors("Add", [data, np.array(1.5)], torch.from_numpy)
    assert isinstance(added[1], torch.Tensor)
