"""A whole-model export's input types (token ids int64, other integer inputs of their
declared type, the rest floats) and ``valid_steps`` over float steps in a float16 graph.

Expected values come from the float64 reference.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm.adapters.onnx.graph_export import GRAPH_OPSET, graph_to_onnx  # noqa: E402
from xframe_bilstm.adapters.onnx.graph_inputs import input_type  # noqa: E402
from xframe_bilstm.graph import LayerRecord, ModelGraph  # noqa: E402
from xframe_bilstm.reference.graph import run_model_reference  # noqa: E402

pytestmark = pytest.mark.onnx

FLOAT = onnx.TensorProto.FLOAT
X = np.random.default_rng(0).standard_normal((3, 4, 2))
LENGTHS = np.array([4, 1, 3])


def _input(name: str, shape: tuple[int | None, ...], dtype: str | None) -> LayerRecord:
    return LayerRecord(name, "input", "InputLayer", options={"shape": shape, "dtype": dtype})


def _valid_steps(x_dtype: str, lengths_dtype: str) -> ModelGraph:
    records = (
        _input("x", (None, 2), x_dtype),
        _input("lengths", (), lengths_dtype),
        LayerRecord("valid", "valid_steps", "ValidSteps", ("x", "lengths")),
    )
    return ModelGraph("valid", records, ("x", "lengths"), ("valid",))


def _embedded(ids_dtype: str) -> ModelGraph:
    embeddings = {"embeddings": np.eye(5, 2, dtype="float32")}
    records = (
        _input("ids", (None,), ids_dtype),
        LayerRecord(
            "embedding", "embedding", "Embedding", ("ids",), {"mask_zero": True}, embeddings
        ),
    )
    return ModelGraph("embedded", records, ("ids",), ("embedding",))


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8"])
def test_an_integer_input_keeps_its_declared_type(dtype: str) -> None:
    graph = _valid_steps("float32", dtype)
    expected = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    assert input_type(onnx, graph, "lengths", FLOAT) == expected
    assert input_type(onnx, graph, "x", FLOAT) == FLOAT


@pytest.mark.parametrize("dtype", ["int32", "float32"])
def test_token_ids_an_embedding_reads_are_int64(dtype: str) -> None:
    assert input_type(onnx, _embedded(dtype), "ids", FLOAT) == onnx.TensorProto.INT64


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", None])
def test_lengths_declared_as_no_integers_are_int64(dtype: str | None) -> None:
    records = (
        _input("x", (None, 2), "float32"),
        _input("lengths", (), dtype),
        LayerRecord("packed", "lengths_mask", "LengthsMask", ("x", "lengths")),
    )
    graph = ModelGraph("packed", records, ("x", "lengths"), ("packed",))
    assert input_type(onnx, graph, "lengths", FLOAT) == onnx.TensorProto.INT64


def test_valid_steps_of_float_steps_are_numbers_of_the_graphs_float_type() -> None:
    graph = _valid_steps("float32", "int32")
    model = graph_to_onnx(graph, opset=GRAPH_OPSET, dtype="float16")
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"x": X.astype(np.float16), "lengths": LENGTHS.astype(np.int32)}
    (got,) = session.run(None, feeds)
    (expected,) = run_model_reference(graph, [X, LENGTHS])
    assert got.dtype == np.float16 and got.shape == (3, 4)
    np.testing.assert_array_equal(got, expected)
