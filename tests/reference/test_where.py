"""The ``where`` kind: the float64 reference from hand-derived cases, and every runner
(torch module, Keras layer, ONNX export on onnxruntime) against it for each comparison."""

from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm.graph import LayerRecord, ModelGraph
from xframe_bilstm.reference.graph import run_model_reference
from xframe_bilstm.reference.where import COMPARISONS, run_where

IDS = np.array([[0, 2, 5], [7, 0, 0]])
SCORES = np.arange(18.0).reshape(2, 3, 3)


def test_padding_keys_are_filled_by_hand() -> None:
    options = {"compare": "eq", "value": 0.0, "fill": -1e9, "axes": (1,)}
    out = run_where(options, [SCORES, IDS], np.float64)
    expected = SCORES.copy()
    expected[0, :, 0] = -1e9  # row 0: key 0 is padding, for every query
    expected[1, :, 1:] = -1e9  # row 1: keys 1 and 2
    np.testing.assert_array_equal(out, expected)


def _graph(compare: str) -> ModelGraph:
    options = {"compare": compare, "value": 2.0, "fill": float("-inf"), "axes": (1,)}
    return ModelGraph(
        "masked",
        (
            LayerRecord("scores", "input", "InputLayer", options={"shape": (3, 3), "dtype": "f"}),
            LayerRecord("ids", "input", "InputLayer", options={"shape": (3,), "dtype": "f"}),
            LayerRecord("where", "where", "masked_fill", ("scores", "ids"), options),
        ),
        inputs=("scores", "ids"),
        outputs=("where",),
    )


@pytest.mark.torch
@pytest.mark.parametrize("compare", sorted(COMPARISONS))
def test_torch_port_computes_the_reference(compare: str) -> None:
    torch = pytest.importorskip("torch")
    from xframe_bilstm.models.to_torch import build_torch

    graph = _graph(compare)
    (expected,) = run_model_reference(graph, [SCORES, IDS.astype(float)])
    got = build_torch(graph)(torch.tensor(SCORES), torch.tensor(IDS.astype(float)))
    np.testing.assert_array_equal(got.numpy(), expected)


@pytest.mark.keras
@pytest.mark.parametrize("compare", sorted(COMPARISONS))
def test_keras_rebuild_computes_the_reference(compare: str) -> None:
    pytest.importorskip("keras")
    from xframe_bilstm.adapters.keras import graph_to_keras

    graph = _graph(compare)
    (expected,) = run_model_reference(graph, [SCORES, IDS.astype(float)], dtype=np.float32)
    got = graph_to_keras(graph)([SCORES.astype("float32"), IDS.astype("float32")])
    np.testing.assert_array_equal(np.asarray(got), expected)


@pytest.mark.parametrize("compare", sorted(COMPARISONS))
def test_onnx_export_computes_the_reference(compare: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    from xframe_bilstm.adapters.onnx.graph_export import graph_to_onnx

    graph = _graph(compare)
    (expected,) = run_model_reference(graph, [SCORES, IDS.astype(float)], dtype=np.float32)
    model = graph_to_onnx(graph, opset=17)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"scores": SCORES.astype("float32"), "ids": IDS.astype("float32")}
    (got,) = session.run(None, feeds)
    np.testing.assert_array_equal(got, expected)


def test_combined_comparisons_are_filled_by_hand() -> None:
    """``(ids == 0) | (ids == 2)`` on the keys, and both the query's and the key's id kept."""
    pad = {
        "op": "or",
        "args": [
            {"compare": "eq", "value": 0.0, "axes": (1,), "input": 1},
            {"compare": "eq", "value": 2.0, "axes": (1,), "input": 1},
        ],
    }
    out = run_where({"fill": -1.0, "condition": pad}, [SCORES, IDS], np.float64)
    expected = SCORES.copy()
    expected[0, :, :2] = -1.0  # row 0: keys 0 (id 0) and 1 (id 2)
    expected[1, :, 1:] = -1.0
    np.testing.assert_array_equal(out, expected)
    square = {
        "op": "and",
        "args": [
            {"compare": "ne", "value": 0.0, "axes": (1,), "input": 1},
            {"compare": "ne", "value": 0.0, "axes": (2,), "input": 1},
        ],
    }
    kept = run_where({"fill": -1.0, "condition": square}, [SCORES, IDS], np.float64)
    expected = SCORES.copy()  # the fill where both hold
    expected[0, 1:, 1:] = -1.0  # ids 2 and 5 are not 0, as query and as key
    expected[1, 0, 0] = -1.0
    np.testing.assert_array_equal(kept, expected)
