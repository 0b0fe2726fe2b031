"""The ``broadcast`` kind (a tensor the module holds, given the batch axis: a learned
initial state, query or class token): the float64 reference against hand-derived cases, and
every runner (torch port, Keras model, ONNX export on onnxruntime) against the reference."""

from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm.factories import random_layer
from xframe_bilstm.graph import LayerRecord, ModelGraph
from xframe_bilstm.reference.graph import run_model_reference

X = np.random.default_rng(0).standard_normal((3, 5, 2))
RNG = np.random.default_rng(1)
H0, C0, CLS = RNG.standard_normal(4), RNG.standard_normal(4), RNG.standard_normal((1, 2))
FLAGS = {"return_sequences": True, "time_major": False, "unroll": False}


def _broadcast(name: str, value: np.ndarray) -> LayerRecord:
    options = {"shape": value.shape}
    return LayerRecord(name, "broadcast", "BatchBroadcast", ("x",), options, {"value": value})


def broadcast_graph() -> ModelGraph:
    """An LSTM started from learned states, over x after a learned first step (a class
    token joined on the time axis)."""
    lstm = random_layer(np.random.default_rng(2), "lstm", 2, 4)
    records = (
        LayerRecord("x", "input", "InputLayer", options={"shape": (None, 2), "dtype": "f"}),
        _broadcast("h0", H0),
        _broadcast("c0", C0),
        _broadcast("cls", CLS),
        LayerRecord(
            "joined", "concatenate", "cat", ("cls", "x"), {"axis": -2, "mask_combine": "any"}
        ),
        LayerRecord("lstm", "recurrent", "LSTM", ("joined", "h0", "c0"), FLAGS, {}, lstm),
    )
    return ModelGraph("learned", records, ("x",), ("lstm", "cls"))


def test_the_held_value_is_repeated_over_the_batch() -> None:
    graph = broadcast_graph()
    y, cls = run_model_reference(graph, [X])
    np.testing.assert_array_equal(cls, np.broadcast_to(CLS, (3, 1, 2)))
    # the LSTM from those states over [cls, x], as a run given them as initial states
    lstm = graph.layer("lstm")
    plain = ModelGraph(
        "plain",
        (
            LayerRecord("s", "input", "InputLayer", options={"shape": (None, 2), "dtype": "f"}),
            LayerRecord("lstm", "recurrent", "LSTM", ("s",), FLAGS, {}, lstm.recurrent),
        ),
        ("s",),
        ("lstm",),
    )
    joined = np.concatenate([np.broadcast_to(CLS, (3, 1, 2)), X], axis=1)
    states = [np.tile(H0, (3, 1)), np.tile(C0, (3, 1))]
    (expected,) = run_model_reference(plain, [joined], initial_states=states)
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-12)


def _float32() -> tuple[np.ndarray, ...]:
    return run_model_reference(broadcast_graph(), [X], dtype=np.float32)


@pytest.mark.torch
def test_torch_port_computes_the_reference() -> None:
    torch = pytest.importorskip("torch")
    from xframe_bilstm.models.to_torch import build_torch

    graph = broadcast_graph()  # float64 weights: the port computes in float64
    got = build_torch(graph)(torch.tensor(X))
    for value, expected in zip(got, run_model_reference(graph, [X]), strict=True):
        np.testing.assert_allclose(value.detach().numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.keras
def test_keras_model_computes_the_reference() -> None:
    pytest.importorskip("keras")
    from xframe_bilstm.adapters.keras import graph_to_keras

    got = graph_to_keras(broadcast_graph())(X.astype("float32"))
    for value, expected in zip(got, _float32(), strict=True):
        np.testing.assert_allclose(np.asarray(value), expected, rtol=0, atol=1e-5)


def test_onnx_export_computes_the_reference() -> None:
    ort = pytest.importorskip("onnxruntime")
    from xframe_bilstm.adapters.onnx.graph_export import graph_to_onnx

    model = graph_to_onnx(broadcast_graph(), opset=17)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": X.astype("float32")})
    for value, expected in zip(got, _float32(), strict=True):
        np.testing.assert_allclose(value, expected, rtol=0, atol=1e-5)
