"""A packed sequence (``lengths_mask``, ``end_mask``) in a whole-model ONNX export, beyond a
recurrent layer under it: the lengths input's declared type, the mask reaching other layers,
and an export compared as the ``against`` of the model's torch port.

Expected values come from the float64 reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm.adapters.onnx.graph_export import GRAPH_OPSET, graph_to_onnx  # noqa: E402
from xframe_bilstm.reference.graph import run_model_reference  # noqa: E402

from ...packed_models import LENGTHS, X, packed_lstm, pooled  # noqa: E402

pytestmark = pytest.mark.onnx


def _run(model: Any, lengths: np.ndarray) -> list[np.ndarray]:
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": X.astype(np.float32), "lengths": lengths})


@pytest.mark.parametrize("dtype", ["int64", "int32"])
def test_the_lengths_are_a_batch_vector_of_their_declared_integer_type(dtype: str) -> None:
    graph = packed_lstm(dtype)
    model = graph_to_onnx(graph, opset=GRAPH_OPSET)
    (declared,) = [i for i in model.graph.input if i.name == "lengths"]
    tensor_type = declared.type.tensor_type
    assert tensor_type.elem_type == onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    assert [d.dim_param for d in tensor_type.shape.dim] == ["batch"]
    got = _run(model, LENGTHS.astype(dtype))
    expected = run_model_reference(graph, [X, LENGTHS], dtype=np.float32)
    for value, want in zip(got, expected, strict=True):
        np.testing.assert_allclose(value, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("ended", [False, True])
def test_the_lengths_mask_reaches_a_pooling_layer_until_end_mask(ended: bool) -> None:
    graph = pooled(ended=ended)
    (got,) = _run(graph_to_onnx(graph, opset=GRAPH_OPSET), LENGTHS)
    (expected,) = run_model_reference(graph, [X, LENGTHS])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.torch
def test_an_export_compares_as_the_against_of_the_models_torch_port() -> None:
    pytest.importorskip("torch")
    from xframe_bilstm import compare
    from xframe_bilstm.models.to_torch import build_torch

    graph = packed_lstm("int64")
    port = build_torch(graph)
    model = graph_to_onnx(graph, opset=GRAPH_OPSET)
    report = compare(
        port,
        against=model,
        inputs=[X.astype(np.float32), LENGTHS],
        frameworks=["onnxruntime"],
    )
    assert report, report
    assert any("@against" in line for line in str(report).splitlines()), report
