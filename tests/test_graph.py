"""The model graph's tensors: a layer's several outputs, named ``layer:index``."""

from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer
from xframe_bilstm.errors import UnsupportedFeatureError
from xframe_bilstm.graph import LayerRecord, ModelGraph


def _lstm(direction: str = "forward") -> RecurrentLayer:
    w = DirectionWeights(np.zeros((2, 4)), np.zeros((1, 4)))
    weights = (w, w) if direction == "bidirectional" else (w,)
    return RecurrentLayer("lstm", 2, 1, weights, direction=direction)


def _graph(*, return_state: bool, outputs: tuple[str, ...]) -> ModelGraph:
    options = {"return_sequences": True, "time_major": False, "unroll": False}
    return ModelGraph(
        "m",
        (
            LayerRecord("x", "input", "InputLayer", options={"shape": (None, 2), "dtype": "f"}),
            LayerRecord("mask", "masking", "Masking", ("x",), {"mask_value": 0.0}),
            LayerRecord(
                "enc",
                "recurrent",
                "Bidirectional",
                ("mask",),
                {**options, "return_state": return_state},
                recurrent=_lstm("bidirectional"),
            ),
        ),
        ("x",),
        outputs,
    )


def test_a_layer_returning_states_names_them_in_keras_order() -> None:
    graph = _graph(return_state=True, outputs=("enc", "enc:4"))
    assert graph.layer("enc").outputs == ("enc", "enc:1", "enc:2", "enc:3", "enc:4")
    assert graph.layer("enc:3").name == "enc"
    assert graph.masked("enc") and not graph.masked("enc:1")


def test_reading_a_state_a_layer_does_not_return_names_the_layer() -> None:
    with pytest.raises(
        UnsupportedFeatureError, match=r"'enc:1'.*'enc' \(Bidirectional\).*1 tensor"
    ):
        _graph(return_state=False, outputs=("enc:1",))


def test_a_chain_ending_in_states_is_not_a_plain_stack() -> None:
    graph = ModelGraph(
        "m",
        (
            LayerRecord("x", "input", "InputLayer", options={"shape": (None, 2), "dtype": "f"}),
            LayerRecord(
                "lstm",
                "recurrent",
                "LSTM",
                ("x",),
                {
                    "return_sequences": False,
                    "time_major": False,
                    "unroll": False,
                    "return_state": True,
                },
                recurrent=_lstm(),
            ),
        ),
        ("x",),
        ("lstm",),
    )
    assert graph.as_stack() is None


def test_an_input_marked_lengths_is_masked_and_outputs_have_labels() -> None:
    x = LayerRecord("x", "input", "InputLayer", options={"shape": (None, 2), "lengths": True})
    graph = ModelGraph("m", (x,), ("x",), ("x",))
    assert graph.masked("x")
    assert graph.output_labels == ("output 'x'",)
    labelled = ModelGraph("m", (x,), ("x",), ("x",), labels=("output",))
    assert labelled.output_labels == ("output",)


def _chain(*, lengths: bool, return_state: bool) -> ModelGraph:
    """x, an LSTM returning sequences, a Dropout, an LSTM returning its last output (and its
    states with ``return_state``), every output of the last returned."""
    flags = {"time_major": False, "unroll": False, "return_state": False}
    shape = {"shape": (None, 2), "dtype": "f"} | ({"lengths": True} if lengths else {})
    first = RecurrentLayer("lstm", 2, 1, (DirectionWeights(np.zeros((2, 4)), np.zeros((1, 4))),))
    last = RecurrentLayer("lstm", 1, 1, (DirectionWeights(np.zeros((1, 4)), np.zeros((1, 4))),))
    records = (
        LayerRecord("x", "input", "InputLayer", options=shape),
        LayerRecord(
            "a", "recurrent", "LSTM", ("x",), {**flags, "return_sequences": True}, recurrent=first
        ),
        LayerRecord("drop", "identity", "Dropout", ("a",)),
        LayerRecord(
            "b",
            "recurrent",
            "LSTM",
            ("drop",),
            {**flags, "return_sequences": False, "return_state": return_state},
            recurrent=last,
        ),
    )
    return ModelGraph("m", records, ("x",), records[-1].outputs)


def test_one_reading_of_a_chain_of_recurrent_layers_as_a_stack() -> None:
    from xframe_bilstm.canonical import RecurrentStack
    from xframe_bilstm.stack_graph import stack_of

    model = _chain(lengths=False, return_state=False)
    layers = tuple(r.recurrent for r in model.layers if r.recurrent is not None)
    assert model.as_stack() == RecurrentStack(layers, return_sequences=False)
    assert stack_of(model) is None  # it masks by its values: a model the builders port whole
    drawn = _chain(lengths=True, return_state=False)
    assert stack_of(drawn) == drawn.as_stack() == model.as_stack()
    # Final states: a stack's when its input takes lengths; a model's own outputs otherwise.
    assert _chain(lengths=False, return_state=True).as_stack() is None
    with_states = RecurrentStack(layers, return_sequences=False, return_state=True)
    assert stack_of(_chain(lengths=True, return_state=True)) == with_states
