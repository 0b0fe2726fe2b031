"""The ``valid_steps`` kind (the valid steps of rows of per-row lengths, as numbers: a mask
written in a torch ``forward``): the float64 reference by hand, and every runner (torch port,
Keras model, ONNX export on onnxruntime) against it, with token ids giving the steps."""

from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm.graph import LayerRecord, ModelGraph
from xframe_bilstm.reference.graph import run_model_reference

IDS = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3], [5, 8, 9, 7, 9]])
LENGTHS = np.array([5, 2, 3])
EXPECTED = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], float)


def valid_steps_graph() -> ModelGraph:
    """The valid steps of token ids' rows, and their count (the lengths as numbers)."""
    count = {"op": "sum", "axes": (1,), "keepdims": False}
    records = (
        LayerRecord("ids", "input", "InputLayer", options={"shape": (None,), "dtype": "int64"}),
        LayerRecord("lengths", "input", "InputLayer", options={"shape": (), "dtype": "int64"}),
        LayerRecord("valid", "valid_steps", "ValidSteps", ("ids", "lengths")),
        LayerRecord("count", "reduce", "sum", ("valid",), count),
    )
    return ModelGraph("valid", records, ("ids", "lengths"), ("valid", "count"))


def test_the_valid_steps_are_ones_then_zeros() -> None:
    valid, count = run_model_reference(valid_steps_graph(), [IDS, LENGTHS])
    np.testing.assert_array_equal(valid, EXPECTED)
    np.testing.assert_array_equal(count, LENGTHS)


@pytest.mark.torch
def test_torch_port_computes_the_reference() -> None:
    torch = pytest.importorskip("torch")
    from xframe_bilstm.models.to_torch import build_torch

    valid, count = build_torch(valid_steps_graph())(torch.tensor(IDS), torch.tensor(LENGTHS))
    np.testing.assert_array_equal(valid.numpy(), EXPECTED)
    np.testing.assert_array_equal(count.numpy(), LENGTHS)


@pytest.mark.keras
def test_keras_model_computes_the_reference() -> None:
    pytest.importorskip("keras")
    from xframe_bilstm.adapters.keras import graph_to_keras

    valid, count = graph_to_keras(valid_steps_graph())([IDS, LENGTHS])
    np.testing.assert_array_equal(np.asarray(valid), EXPECTED)
    np.testing.assert_array_equal(np.asarray(count), LENGTHS)


def test_onnx_export_computes_the_reference() -> None:
    ort = pytest.importorskip("onnxruntime")
    from xframe_bilstm.adapters.onnx.graph_export import graph_to_onnx

    model = graph_to_onnx(valid_steps_graph(), opset=17)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    valid, count = session.run(None, {"ids": IDS, "lengths": LENGTHS})
    np.testing.assert_array_equal(valid, EXPECTED)
    np.testing.assert_array_equal(count, LENGTHS)
