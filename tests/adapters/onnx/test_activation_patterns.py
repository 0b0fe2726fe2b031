"""Activations written out with several operators (GELU with ``Erf`` in each order
exporters write it, torch's thresholded softplus) found, and run as one torch function by a
capturable interpreter module. Expected values come from onnxruntime."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from xframe_bilstm.adapters.onnx import onnx_module  # noqa: E402
from xframe_bilstm.adapters.onnx.activation_patterns import activation_patterns  # noqa: E402
from xframe_bilstm.adapters.onnx.nodes import graph_constant_values  # noqa: E402


def _constant(name: str, value: float) -> onnx.NodeProto:
    array = onnx.numpy_helper.from_array(np.array(value, np.float32))
    return helper.make_node("Constant", [], [name], value=array)


def _graph(nodes: list, extra_output: str | None = None) -> onnx.ModelProto:
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_output:
        outputs.append(helper.make_tensor_value_info(extra_output, TensorProto.FLOAT, None))
    constants = [
        _constant("root2", math.sqrt(2)), _constant("inverse", 1 / math.sqrt(2)),
        _constant("one", 1.0), _constant("half", 0.5), _constant("twenty", 20.0),
    ]  # fmt: skip
    graph = helper.make_graph(
        constants + nodes,
        "gelu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 6])],
        outputs,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


TORCH_ORDER = [  # torch.onnx: Mul(Mul(x, 1 + erf(x / sqrt 2)), 0.5)
    helper.make_node("Div", ["x", "root2"], ["scaled"]),
    helper.make_node("Erf", ["scaled"], ["erf"]),
    helper.make_node("Add", ["erf", "one"], ["plus"]),
    helper.make_node("Mul", ["x", "plus"], ["product"]),
    helper.make_node("Mul", ["product", "half"], ["y"]),
]
HALF_FIRST = [  # Mul(Mul(x, 0.5), 1 + erf(x * (1 / sqrt 2)))
    helper.make_node("Mul", ["inverse", "x"], ["scaled"]),
    helper.make_node("Erf", ["scaled"], ["erf"]),
    helper.make_node("Add", ["one", "erf"], ["plus"]),
    helper.make_node("Mul", ["x", "half"], ["halved"]),
    helper.make_node("Mul", ["halved", "plus"], ["y"]),
]


DYNAMO_SOFTPLUS = [  # torch.onnx's dynamo exporter: Where(Greater(x, 20), x, Softplus(x))
    helper.make_node("Softplus", ["x"], ["soft"]),
    helper.make_node("Greater", ["x", "twenty"], ["above"]),
    helper.make_node("Where", ["above", "x", "soft"], ["y"]),
]


@pytest.mark.parametrize(
    ("nodes", "activation", "inside"),
    [
        (TORCH_ORDER, "gelu", "erf"),
        (HALF_FIRST, "gelu", "erf"),
        (DYNAMO_SOFTPLUS, "softplus", "soft"),
    ],
    ids=["gelu-torch-onnx", "gelu-half-first", "softplus-dynamo"],
)
def test_each_pattern_is_one_activation_computing_what_onnxruntime_computes(
    nodes: list, activation: str, inside: str
) -> None:
    model = _graph(nodes)
    found, inner = activation_patterns(model.graph, graph_constant_values(model.graph))
    assert found == {"y": (activation, "x")}
    assert inside in inner and "y" not in inner
    x = np.random.default_rng(0).standard_normal((3, 6)).astype("float32") * 3
    x[0, :2] = 25.0, -30.0  # beyond the softplus's threshold on both sides
    (expected,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    module = onnx_module(model, capturable=True)
    np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), expected, atol=1e-6)
    exported = torch.export.export(module, (torch.from_numpy(x),))
    ops = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert f"aten.{activation}.default" in ops
    assert not {op.split(".")[1] for op in ops} & {"erf", "where", "gt", "mul", "add", "div"}


def test_a_value_read_outside_the_pattern_keeps_the_nodes_as_written() -> None:
    model = _graph(TORCH_ORDER, extra_output="erf")  # erf is also an output of the graph
    assert activation_patterns(model.graph, graph_constant_values(model.graph)) == ({}, set())


def test_another_constant_is_not_gelu() -> None:
    nodes = [helper.make_node("Mul", ["product", "one"], ["y"]) if n.output == ["y"] else n
             for n in TORCH_ORDER]  # fmt: skip
    model = _graph(nodes)
    assert activation_patterns(model.graph, graph_constant_values(model.graph)) == ({}, set())
