"""The int8 operators, one node built with ``onnx.helper``, against onnxruntime running it.

``DynamicQuantizeLSTM`` in every direction, with lengths and initial states, per-direction
and per-column scales, int8 and uint8 weights, and at the thread counts that change how
onnxruntime's kernel groups the batch; the quantization operators per tensor and per axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from xframe_bilstm.adapters.onnx import onnx_module  # noqa: E402
from xframe_bilstm.adapters.onnx.quantized_lstm import (  # noqa: E402
    kernel_threads,
    recurrent_groups,
)
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402

_F = TensorProto.FLOAT
_MS_OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]


def _model(nodes: list[Any], inputs: dict[str, np.ndarray], fixed: dict[str, np.ndarray],
           outputs: list[str]) -> Any:  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape)
            )
            for name, a in inputs.items()
        ],
        [helper.make_empty_tensor_value_info(name) for name in outputs],
        [numpy_helper.from_array(a, name) for name, a in fixed.items()],
    )
    return helper.make_model(graph, opset_imports=_MS_OPSETS)


def _runtime(model: Any, inputs: dict[str, np.ndarray], threads: int = 1) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, inputs)


def _module(model: Any, inputs: dict[str, np.ndarray], threads: int = 1) -> list[np.ndarray]:
    module = onnx_module(model)
    with torch.no_grad(), kernel_threads(threads):
        out = module(*(torch.from_numpy(a) for a in inputs.values()))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def _lstm_case(
    rng: np.random.Generator,
    *,
    steps: int = 5,
    batch: int = 3,
    size: int = 4,
    hidden: int = 6,
    direction: str = "forward",
    per_column: bool = False,
    weight_type: Any = np.int8,
    lengths: bool = True,
) -> tuple[Any, dict[str, np.ndarray]]:
    dirs = 2 if direction == "bidirectional" else 1
    info = np.iinfo(weight_type)
    shape = (dirs, 4 * hidden) if per_column else (dirs,)
    fixed = {
        "W": rng.integers(info.min, info.max + 1, (dirs, size, 4 * hidden)).astype(weight_type),
        "R": rng.integers(info.min, info.max + 1, (dirs, hidden, 4 * hidden)).astype(weight_type),
        "B": rng.normal(0, 0.3, (dirs, 8 * hidden)).astype(np.float32),
        "w_scale": rng.uniform(0.002, 0.01, shape).astype(np.float32),
        "w_zero": np.full(shape, 3 if weight_type == np.uint8 else 0, weight_type),
        "r_scale": rng.uniform(0.002, 0.01, shape).astype(np.float32),
        "r_zero": np.full(shape, 5 if weight_type == np.uint8 else 0, weight_type),
    }
    inputs = {
        "x": rng.standard_normal((steps, batch, size)).astype(np.float32),
        "lengths": rng.integers(1, steps + 1, batch).astype(np.int32),
        "h0": rng.normal(0, 0.5, (dirs, batch, hidden)).astype(np.float32),
        "c0": rng.normal(0, 0.5, (dirs, batch, hidden)).astype(np.float32),
    }
    if not lengths:
        del inputs["lengths"]
    names = ["x", "W", "R", "B", "lengths" if lengths else "", "h0", "c0", ""]
    names += ["w_scale", "w_zero", "r_scale", "r_zero"]
    node = helper.make_node(
        "DynamicQuantizeLSTM", names, ["Y", "Y_h", "Y_c"], domain="com.microsoft",
        hidden_size=hidden, direction=direction, name="qlstm",
    )  # fmt: skip
    return _model([node], inputs, fixed, ["Y", "Y_h", "Y_c"]), inputs


@pytest.mark.parametrize(
    "options",
    [
        {"direction": "forward"},
        {"direction": "reverse"},
        {"direction": "bidirectional"},
        {"direction": "bidirectional", "lengths": False},
        {"direction": "bidirectional", "per_column": True},
        {"direction": "bidirectional", "weight_type": np.uint8},
        {"direction": "forward", "batch": 1},
        {"direction": "bidirectional", "hidden": 260, "batch": 3},  # batch not split
        {"direction": "bidirectional", "batch": 9},
    ],
    ids=lambda o: "-".join(f"{k}={getattr(v, '__name__', v)}" for k, v in o.items()),
)
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_dynamic_quantize_lstm_is_onnxruntimes_kernel(options: dict[str, Any], threads: int):
    model, inputs = _lstm_case(np.random.default_rng(threads), **options)
    expected = _runtime(model, inputs, threads)
    actual = _module(model, inputs, threads)
    for name, e, a in zip(("Y", "Y_h", "Y_c"), expected, actual):
        assert a.shape == e.shape, name
        np.testing.assert_allclose(a, e, atol=2e-6, rtol=0, err_msg=name)


def test_the_thread_count_changes_onnxruntimes_int8_lstm():
    """Why kernel_threads exists: one graph, two thread counts, two results; each matched."""
    model, inputs = _lstm_case(np.random.default_rng(7), direction="forward", batch=4)
    one, two = _runtime(model, inputs, 1)[0], _runtime(model, inputs, 2)[0]
    assert np.abs(one - two).max() > 1e-5
    np.testing.assert_allclose(_module(model, inputs, 2)[0], two, atol=2e-6, rtol=0)
    np.testing.assert_allclose(_module(model, inputs, 1)[0], one, atol=2e-6, rtol=0)


def test_recurrent_groups_follow_the_kernels_rule():
    # Split when B > 4, or 2 <= B and H <= 256; groups of ceil(B / threads) rows.
    with kernel_threads(3):
        assert recurrent_groups(batch=7, hidden=8) == [(0, 3), (3, 6), (6, 7)]
        assert recurrent_groups(batch=3, hidden=300) == [(0, 3)]
        assert recurrent_groups(batch=5, hidden=300) == [(0, 2), (2, 4), (4, 5)]
    with pytest.raises(ValueError, match="threads must be at least 1, got 0"), kernel_threads(0):
        pass


@pytest.mark.parametrize(
    "option, value, named",
    [
        ("clip", 1.0, "clip=1.0"),
        ("input_forget", 1, "input_forget=1"),
        ("activations", ["Tanh", "Tanh", "Tanh"], "activations"),
    ],
)
def test_dynamic_quantize_lstm_options_not_computed_are_refused(
    option: str, value: Any, named: str
):
    model, inputs = _lstm_case(np.random.default_rng(0))
    model.graph.node[0].attribute.append(helper.make_attribute(option, value))
    with pytest.raises(UnsupportedFeatureError, match=f"DynamicQuantizeLSTM node 'qlstm'.*{named}"):
        _module(model, inputs)


def test_dynamic_quantize_linear_and_matmul_integer_are_onnxruntimes():
    rng = np.random.default_rng(3)
    inputs = {"a": rng.standard_normal((3, 4, 5)).astype(np.float32)}
    fixed = {
        "b": rng.integers(-128, 128, (5, 6)).astype(np.int8),
        "b_zero": np.array(3, np.int8),
        "scale_b": np.array(0.02, np.float32),
    }
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["a"], ["q", "s", "z"]),
        helper.make_node("MatMulInteger", ["q", "b", "z", "b_zero"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["accf"], to=_F),
        helper.make_node("Mul", ["s", "scale_b"], ["scale"]),
        helper.make_node("Mul", ["accf", "scale"], ["y"]),
    ]
    model = _model(nodes, inputs, fixed, ["q", "s", "z", "acc", "y"])
    for name, e, a in zip(
        ("q", "s", "z", "acc", "y"), _runtime(model, inputs), _module(model, inputs)
    ):
        assert a.dtype == e.dtype, name
        np.testing.assert_array_equal(a, e, err_msg=name)


@pytest.mark.parametrize("per_column", [False, True])
def test_dynamic_quantize_matmul_is_onnxruntimes(per_column: bool):
    rng = np.random.default_rng(4)
    inputs = {"a": rng.standard_normal((2, 7, 5)).astype(np.float32)}
    shape = (6,) if per_column else ()
    fixed = {
        "b": rng.integers(-128, 128, (5, 6)).astype(np.int8),
        "b_scale": rng.uniform(0.01, 0.03, shape).astype(np.float32),
        "b_zero": np.zeros(shape, np.int8),
        "bias": rng.standard_normal(6).astype(np.float32),
    }
    node = helper.make_node(
        "DynamicQuantizeMatMul", ["a", "b", "b_scale", "b_zero", "bias"], ["y"],
        domain="com.microsoft",
    )  # fmt: skip
    model = _model([node], inputs, fixed, ["y"])
    np.testing.assert_allclose(_module(model, inputs)[0], _runtime(model, inputs)[0], atol=1e-6)


@pytest.mark.parametrize("zero_type", [np.int8, np.uint8])
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_quantize_and_dequantize_linear_of_computed_values(zero_type: Any, axis: int | None):
    rng = np.random.default_rng(5)
    inputs = {"x": (rng.standard_normal((4, 3)) * 2).astype(np.float32)}
    size = 1 if axis is None else (4, 3)[axis]
    fixed = {
        "scale": rng.uniform(0.01, 0.05, size)
        .astype(np.float32)
        .reshape(() if axis is None else (size,)),
        "zero": rng.integers(0, 9, size).astype(zero_type).reshape(() if axis is None else (size,)),
    }
    attributes = {} if axis is None else {"axis": axis}
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["q"], **attributes),
        helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["y"], **attributes),
    ]
    model = _model(nodes, inputs, fixed, ["q", "y"])
    for e, a in zip(_runtime(model, inputs), _module(model, inputs)):
        assert a.dtype == e.dtype
        np.testing.assert_array_equal(a, e)
