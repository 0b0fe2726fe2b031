"""The ``lengths_mask`` and ``end_mask`` kinds (a torch packed sequence): the float64
reference against hand-derived cases, and every runner (torch port, Keras model, ONNX export
on onnxruntime) against the reference."""

from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm.factories import random_layer
from xframe_bilstm.graph import LayerRecord, ModelGraph
from xframe_bilstm.reference.graph import run_model_reference

LENGTHS = np.array([5, 2, 3])
X = np.random.default_rng(0).standard_normal((3, 5, 2))


def packed_graph(direction: str = "bidirectional", *, ended: bool = True) -> ModelGraph:
    """x and its lengths, an LSTM over the packed steps (zeros after them, final states at
    each row's last step), then, where ``ended``, an unmasked GRU over what padding leaves."""
    rng = np.random.default_rng(1)
    lstm = random_layer(
        rng, "lstm", 2, 3, direction=direction, zero_masked_outputs=direction == "forward"
    )
    flags = {"return_sequences": True, "time_major": False, "unroll": False}
    records = [
        LayerRecord("x", "input", "InputLayer", options={"shape": (None, 2), "dtype": "f"}),
        LayerRecord("lengths", "input", "InputLayer", options={"shape": (), "dtype": "int64"}),
        LayerRecord("packed", "lengths_mask", "LengthsMask", ("x", "lengths")),
        LayerRecord(
            "lstm", "recurrent", "LSTM", ("packed",), {**flags, "return_state": True}, {}, lstm
        ),
    ]
    outputs: tuple[str, ...] = ("lstm", "lstm:1")
    if ended:
        gru = random_layer(rng, "gru", lstm.output_size, 2)
        records += [
            LayerRecord("padded", "end_mask", "EndMask", ("lstm",)),
            LayerRecord("gru", "recurrent", "GRU", ("padded",), flags, {}, gru),
        ]
        outputs = ("gru", "lstm:1")
    return ModelGraph("packed", tuple(records), ("x", "lengths"), outputs)


def _alone(graph: ModelGraph, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """The LSTM of ``graph`` run unmasked on one row's valid steps."""
    lstm = graph.layer("lstm")
    alone = ModelGraph(
        "alone",
        (
            graph.layer("x"),
            LayerRecord("lstm", "recurrent", "LSTM", ("x",), lstm.options, {}, lstm.recurrent),
        ),
        ("x",),
        ("lstm", "lstm:1"),
    )
    return run_model_reference(alone, [x])


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_packed_steps_are_each_row_alone_then_zeros(direction: str) -> None:
    graph = packed_graph(direction, ended=False)
    y, h = run_model_reference(graph, [X, LENGTHS])
    for row, length in enumerate(LENGTHS):
        y_alone, h_alone = _alone(graph, X[row : row + 1, :length])
        np.testing.assert_allclose(y[row, :length], y_alone[0], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(y[row, length:], 0.0)
        np.testing.assert_allclose(h[row], h_alone[0], rtol=0, atol=1e-12)


def test_after_end_mask_the_padding_is_read_as_zeros() -> None:
    """The GRU after ``end_mask`` runs over every step, the LSTM's zeros included."""
    graph = packed_graph()
    (lstm_out, _), (y, _) = (
        run_model_reference(packed_graph(ended=False), [X, LENGTHS]),
        run_model_reference(graph, [X, LENGTHS]),
    )
    unmasked = ModelGraph(
        "gru",
        (
            LayerRecord("s", "input", "InputLayer", options={"shape": (None, 6), "dtype": "f"}),
            LayerRecord(
                "gru",
                "recurrent",
                "GRU",
                ("s",),
                graph.layer("gru").options,
                {},
                graph.layer("gru").recurrent,
            ),
        ),
        ("s",),
        ("gru",),
    )
    np.testing.assert_allclose(y, run_model_reference(unmasked, [lstm_out])[0], rtol=0, atol=1e-12)


def test_lengths_out_of_range_are_refused_by_name() -> None:
    from xframe_bilstm.errors import WeightShapeError

    with pytest.raises(WeightShapeError, match=r"lengths: each must be in 1\.\.5"):
        run_model_reference(packed_graph(), [X, np.array([6, 1, 1])])


def _float32(graph: ModelGraph) -> tuple[np.ndarray, ...]:
    return run_model_reference(graph, [X, LENGTHS], dtype=np.float32)


@pytest.mark.torch
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_torch_port_computes_the_reference(direction: str) -> None:
    torch = pytest.importorskip("torch")
    from xframe_bilstm.models.to_torch import build_torch

    graph = packed_graph(direction)  # float64 weights: the port computes in float64
    got = build_torch(graph)(torch.tensor(X), torch.tensor(LENGTHS))
    for value, expected in zip(got, run_model_reference(graph, [X, LENGTHS])):
        np.testing.assert_allclose(value.detach().numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.keras
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_keras_model_computes_the_reference(direction: str) -> None:
    pytest.importorskip("keras")
    from xframe_bilstm.adapters.keras import graph_to_keras

    graph = packed_graph(direction)
    got = graph_to_keras(graph)([X.astype("float32"), LENGTHS])
    for value, expected in zip(got, _float32(graph)):
        np.testing.assert_allclose(np.asarray(value), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_onnx_export_computes_the_reference(direction: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    from xframe_bilstm.adapters.onnx.graph_export import graph_to_onnx

    graph = packed_graph(direction)
    model = graph_to_onnx(graph, opset=17)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": X.astype("float32"), "lengths": LENGTHS})
    for value, expected in zip(got, _float32(graph)):
        np.testing.assert_allclose(value, expected, rtol=0, atol=1e-5)
