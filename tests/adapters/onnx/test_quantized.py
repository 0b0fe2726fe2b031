"""Int8 graphs made by onnxruntime's quantizer: run exactly (``onnx_to_torch``, checked
against onnxruntime) and read as the float graphs they approximate (``dequantized_model``,
checked against the float torch model given onnx's own dequantization of the weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from tests.quantized_models import VOCABULARY, int8_tagger  # noqa: E402
from xframe_bilstm.adapters.onnx.quantized import (  # noqa: E402
    dequantized_model,
    fold_constant_quantization,
)
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.onnx_converters import onnx_to_torch  # noqa: E402

VARIANTS = {
    "bilstm": {},
    "lstm": {"bidirectional": False},
    "two-layers": {"layers": 2},
    "per-channel": {"per_channel": True},
    "fused": {"fused": True},
}


def _tokens(batch: int, steps: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCABULARY, (batch, steps)).astype(np.int64)


def _runtime(
    model: Any, feeds: dict[str, np.ndarray], threads: int = 1, optimize: bool = True
) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"]).run(None, feeds)


def _ops(model: Any) -> set[str]:
    return {n.op_type for n in onnx.load_from_string(model).graph.node}


def test_onnxruntimes_quantizer_writes_the_int8_operators(tmp_path: Path):
    _, plain = int8_tagger(tmp_path)
    assert {
        "DynamicQuantizeLSTM",
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "DequantizeLinear",
    } <= _ops(plain)
    _, fused = int8_tagger(tmp_path, fused=True)
    assert {"DynamicQuantizeLSTM", "DynamicQuantizeMatMul"} <= _ops(fused)


@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_to_torch_runs_an_int8_graph_as_onnxruntime(tmp_path: Path, variant: str):
    _, int8 = int8_tagger(tmp_path, **VARIANTS[variant])
    module = onnx_to_torch(int8)  # verified against onnxruntime on the graph
    tokens = _tokens(3, 9)
    (expected,) = _runtime(int8, {"tokens": tokens})
    with torch.no_grad():
        actual = module(torch.from_numpy(tokens)).numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)


def _onnx_dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int = 1) -> Any:
    """``q`` dequantized by onnx's reference implementation of DequantizeLinear."""
    node = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=axis)
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    arrays = [numpy_helper.from_array(a, k) for a, k in zip((q, scale, zero), "qsz")]
    graph = helper.make_graph([node], "dq", [], [output], arrays)
    return ReferenceEvaluator(helper.make_model(graph)).run(None, {})[0]


def _iofc_to_torch(weight: np.ndarray) -> np.ndarray:
    i, o, f, c = np.split(weight, 4, axis=0)
    return np.concatenate([i, f, c, o], axis=0)


def test_dequantized_model_is_the_float_model_with_the_dequantized_weights(tmp_path: Path):
    model, int8_bytes = int8_tagger(tmp_path)
    int8 = onnx.load_from_string(int8_bytes)
    (lstm,) = [n for n in int8.graph.node if n.op_type == "DynamicQuantizeLSTM"]
    (matmul,) = [n for n in int8.graph.node if n.op_type == "MatMulInteger"]
    c = {i.name: numpy_helper.to_array(i) for i in int8.graph.initializer}
    r = _onnx_dequantize(c[lstm.input[2]], c[lstm.input[10]], c[lstm.input[11]], axis=0)
    w = _onnx_dequantize(c[lstm.input[1]], c[lstm.input[8]], c[lstm.input[9]], axis=0)
    table = [c[f"embedding.weight_{k}"] for k in ("quantized", "scale", "zero_point")]
    embedding = _onnx_dequantize(*table)
    head_scale = c[matmul.input[1].removesuffix("_quantized") + "_scale"]
    head = _onnx_dequantize(c[matmul.input[1]], head_scale, c[matmul.input[3]])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    original = dict(state)
    state["embedding.weight"] = torch.from_numpy(embedding)
    state["head.weight"] = torch.from_numpy(np.ascontiguousarray(head.T))
    for d, suffix in enumerate(("", "_reverse")):
        state[f"lstm.weight_ih_l0{suffix}"] = torch.from_numpy(_iofc_to_torch(w[d].T))
        state[f"lstm.weight_hh_l0{suffix}"] = torch.from_numpy(_iofc_to_torch(r[d].T))
    for name in ("lstm.weight_ih_l0", "head.weight", "embedding.weight"):
        # each weight within half a quantization step of the float model's
        assert (state[name] - original[name]).abs().max() < 0.02
    model.load_state_dict(state)
    tokens = _tokens(3, 9)
    (actual,) = _runtime(dequantized_model(int8_bytes), {"tokens": tokens})
    with torch.no_grad():
        expected = model(torch.from_numpy(tokens)).numpy()
    np.testing.assert_allclose(actual, expected, atol=2e-6, rtol=0)
    # the float graph converts, checked against onnxruntime on it
    module = onnx_to_torch(dequantized_model(int8_bytes))
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(tokens)).numpy(), expected, atol=2e-6)


@pytest.mark.parametrize("variant", ["per-channel", "fused", "two-layers"])
def test_dequantized_model_is_a_float_graph(tmp_path: Path, variant: str):
    _, int8 = int8_tagger(tmp_path, **VARIANTS[variant])
    floats = dequantized_model(int8)
    onnx.checker.check_model(floats, full_check=True)
    assert not {n.domain for n in floats.graph.node} - {""}
    assert not _ops(floats.SerializeToString()) & {
        "DynamicQuantizeLSTM",
        "MatMulInteger",
        "DynamicQuantizeMatMul",
    }
    tokens = _tokens(2, 6)
    (approx,) = _runtime(floats, {"tokens": tokens})
    (quantized,) = _runtime(int8, {"tokens": tokens})
    assert np.abs(approx - quantized).max() < 0.02  # what int8 rounding moves


@pytest.mark.parametrize("zero_type", [np.int8, np.uint8])
def test_constant_quantization_chains_are_folded(zero_type: Any):
    rng = np.random.default_rng(2)
    fixed = {
        "w": rng.standard_normal((4, 3)).astype(np.float32),
        "scale": rng.uniform(0.01, 0.02, 3).astype(np.float32),
        "zero": rng.integers(0, 5, 3).astype(zero_type),
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["w", "scale", "zero"], ["wq"], axis=1),
        helper.make_node("DequantizeLinear", ["wq", "scale", "zero"], ["wd"], axis=1),
        helper.make_node("MatMul", ["x", "wd"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(v, k) for k, v in fixed.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    folded = fold_constant_quantization(model)
    assert [n.op_type for n in folded.graph.node] == ["MatMul"]
    x = {"x": rng.standard_normal((2, 4)).astype(np.float32)}
    # Unoptimized: onnxruntime's optimizer turns DequantizeLinear -> MatMul into a matmul
    # that quantizes x per call, which is not the float graph the operators define.
    expected = _runtime(model, x, optimize=False)[0]
    np.testing.assert_allclose(_runtime(folded, x)[0], expected, atol=1e-6, rtol=0)


def test_quantized_weights_computed_at_run_time_are_refused_by_name():
    node = helper.make_node(
        "DynamicQuantizeMatMul", ["a", "b", "s"], ["y"], domain="com.microsoft", name="dense"
    )
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("b", TensorProto.INT8, [3, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
        [numpy_helper.from_array(np.array(0.1, np.float32), "s")],
    )  # fmt: skip
    with pytest.raises(
        UnsupportedFeatureError, match="DynamicQuantizeMatMul node 'dense': its B 'b'"
    ):
        dequantized_model(helper.make_model(graph))


def test_other_com_microsoft_operators_are_named_in_the_refusal(tmp_path: Path):
    _, int8 = int8_tagger(tmp_path)
    model = onnx.load_from_string(int8)
    model.graph.node.append(
        helper.make_node(
            "FusedGemm", ["logits", "logits"], ["extra"], domain="com.microsoft", name="odd"
        )
    )
    with pytest.raises(
        UnsupportedFeatureError, match=r"com\.microsoft\.FusedGemm \(1 node: 'odd'\)"
    ):
        onnx_to_torch(model, verify=False)
