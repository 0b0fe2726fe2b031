"""Graphs exported for one batch size made to run at any, each checked row by row against
the graph as given on onnxruntime; graphs that hold their batch otherwise stay as given."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from xframe_bilstm.adapters.onnx.free_batch import fixed_batch, free_batch  # noqa: E402

RNG = np.random.default_rng(0)


def _graph(nodes: list, batch: int, initializers: list, dims: tuple = (6, 4)) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *dims])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [x], [y], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _flatten_then_dense(batch: int) -> onnx.ModelProto:
    """x (batch, 6, 4) -> Reshape to the constant (batch, 24) -> MatMul: as torch's dynamo
    exporter writes x.flatten(1) at a fixed batch."""
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["y"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([batch, 24], np.int64), "shape"),
        numpy_helper.from_array(RNG.standard_normal((24, 3)).astype(np.float32), "w"),
    ]
    return _graph(nodes, batch, initializers)


@pytest.mark.parametrize("batch", [1, 2])
def test_a_reshape_holding_the_batch_takes_any_batch(batch: int):
    model = _flatten_then_dense(batch)
    assert fixed_batch(model) == batch
    freed = free_batch(model)
    assert freed is not None and fixed_batch(freed) is None
    x = RNG.standard_normal((5 * batch, 6, 4)).astype(np.float32)
    rows = [_run(model, x[i : i + batch]) for i in range(0, 5 * batch, batch)]
    np.testing.assert_allclose(_run(freed, x), np.concatenate(rows), rtol=1e-6)


def test_a_graph_of_a_dynamic_batch_is_returned_as_it_is():
    model = _flatten_then_dense(1)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "n"
    assert fixed_batch(model) is None
    assert free_batch(model) is model


def test_a_constant_of_one_value_per_row_keeps_the_batch():
    """An Add of a constant with a different value per row: the graph runs at its batch
    alone, and freeing it is refused (None), not guessed."""
    bias = numpy_helper.from_array(RNG.standard_normal((2, 6, 4)).astype(np.float32), "bias")
    model = _graph([helper.make_node("Add", ["x", "bias"], ["y"])], 2, [bias])
    assert free_batch(model) is None


def test_expanded_zeros_of_the_batch_size_expand_to_any():
    """torch's zeros of the batch's size, expanded: one value, the same at every size."""
    zeros = numpy_helper.from_array(np.zeros((2, 6, 4), np.float32), "zeros")
    shape = numpy_helper.from_array(np.array([2, 6, 4], np.int64), "shape")
    nodes = [
        helper.make_node("Expand", ["zeros", "shape"], ["z"]),
        helper.make_node("Add", ["x", "z"], ["y"]),
    ]
    model = _graph(nodes, 2, [zeros, shape])
    # The Expand's own target holds the batch too: left as it is, the graph is not freed.
    assert free_batch(model) is None
    nodes[0] = helper.make_node("Expand", ["zeros", "like"], ["z"])
    nodes.insert(0, helper.make_node("Shape", ["x"], ["like"]))
    model = _graph(nodes, 2, [zeros])
    freed = free_batch(model)
    assert freed is not None
    x = RNG.standard_normal((6, 6, 4)).astype(np.float32)
    np.testing.assert_array_equal(_run(freed, x), x)


@pytest.mark.parametrize("computed", [False, True], ids=["constant", "computed"])
def test_learned_initial_states_of_the_batch_size_expand_to_any(computed: bool):
    """A GRU node's initial state, one learned row at the export's batch of 2, as torch's
    exporters write ``h0.expand(-1, B, -1)``: a constant (dynamo), or an ``Expand`` of the
    row to a target computed from constants (TorchScript). Expanded from that row."""
    hidden = 4
    row = RNG.standard_normal((1, 1, hidden)).astype(np.float32)
    initializers = [
        numpy_helper.from_array(RNG.standard_normal((1, 3 * hidden, 4)).astype(np.float32), "w"),
        numpy_helper.from_array(
            RNG.standard_normal((1, 3 * hidden, hidden)).astype(np.float32), "r"
        ),
        numpy_helper.from_array(np.repeat(row, 2, axis=1), "h0"),
        numpy_helper.from_array(np.array([1], np.int64), "direction_axis"),
    ]
    nodes = [
        helper.make_node("Transpose", ["x"], ["x_t"], perm=[1, 0, 2]),
        helper.make_node("GRU", ["x_t", "w", "r", "", "", "h0"], ["y_4d"], hidden_size=hidden),
        helper.make_node("Squeeze", ["y_4d", "direction_axis"], ["y_t"]),
        helper.make_node("Transpose", ["y_t"], ["y"], perm=[1, 0, 2]),
    ]
    if computed:
        initializers[2] = numpy_helper.from_array(row, "h0_row")
        initializers.append(numpy_helper.from_array(np.array([1, 2, hidden], np.int64), "at"))
        nodes[:0] = [
            helper.make_node("Identity", ["at"], ["target"]),
            helper.make_node("Expand", ["h0_row", "target"], ["h0"]),
        ]
    model = _graph(nodes, 2, initializers)
    freed = free_batch(model)
    assert freed is not None
    x = RNG.standard_normal((6, 6, 4)).astype(np.float32)
    rows = [_run(model, x[i : i + 2]) for i in range(0, 6, 2)]
    np.testing.assert_allclose(_run(freed, x), np.concatenate(rows), rtol=1e-6)
    if not computed:  # rows that differ are the batch's own: the graph is not freed
        initializers[2] = numpy_helper.from_array(
            RNG.standard_normal((1, 2, hidden)).astype(np.float32), "h0"
        )
        assert free_batch(_graph(nodes, 2, initializers)) is None
