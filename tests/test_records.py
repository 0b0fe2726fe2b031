"""The records of a model graph: kinds, mask rules, and the tensors a record returns."""

from __future__ import annotations

import numpy as np
import pytest

import xframe_bilstm.graph
from xframe_bilstm import records
from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer
from xframe_bilstm.errors import UnsupportedFeatureError
from xframe_bilstm.records import LayerRecord, state_count, tensor_layer, tensor_name


def _lstm(direction: str = "forward") -> RecurrentLayer:
    w = DirectionWeights(np.zeros((2, 4)), np.zeros((1, 4)))
    weights = (w, w) if direction == "bidirectional" else (w,)
    return RecurrentLayer("lstm", 2, 1, weights, direction=direction)


def test_names_and_counts() -> None:
    assert tensor_name("a", 0) == tensor_layer("a") == "a"
    assert tensor_layer(tensor_name("a", 3)) == "a"
    assert tensor_layer("a:b") == "a:b"
    assert state_count(_lstm("bidirectional")) == 4


def test_an_unmerged_bidirectional_layer_returns_both_directions_then_its_states() -> None:
    layer = RecurrentLayer("lstm", 2, 1, _lstm("bidirectional").weights, "bidirectional", None)
    options = {"return_sequences": True, "time_major": False, "return_state": True}
    record = LayerRecord("enc", "recurrent", "Bidirectional", ("x",), options, recurrent=layer)
    # output forward, output backward, then h, c per direction
    assert record.outputs == ("enc", "enc:1", "enc:2", "enc:3", "enc:4", "enc:5")


def test_an_unknown_kind_and_a_recurrent_record_without_its_layer_are_refused() -> None:
    with pytest.raises(UnsupportedFeatureError, match="kind 'lstm' not in"):
        LayerRecord("enc", "lstm", "LSTM")
    with pytest.raises(UnsupportedFeatureError, match="exactly the recurrent layers"):
        LayerRecord("enc", "recurrent", "LSTM")


@pytest.mark.parametrize("name", records.__all__)
def test_every_record_name_is_still_imported_from_the_graph_module(name: str) -> None:
    assert getattr(xframe_bilstm.graph, name) is getattr(records, name)
    assert name in xframe_bilstm.graph.__all__
