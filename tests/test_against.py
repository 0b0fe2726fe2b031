"""compare(source, against=...): what the second model must share with the source, decided
from the two graphs (their inputs, their recurrent records), refused by name otherwise."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import compare  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError, WeightShapeError  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def _lstm(features: int, *, layers: int = 1) -> object:
    torch.manual_seed(0)
    return torch.nn.LSTM(features, 4, num_layers=layers, batch_first=True)


def test_a_second_model_on_other_input_features_is_refused_with_both_sizes() -> None:
    with pytest.raises(WeightShapeError, match="takes 5 input features where the source takes 3"):
        compare(_lstm(3), against=_lstm(5), frameworks=["torch"])


def test_a_whole_model_cannot_stand_for_recurrent_layers() -> None:
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.LSTM(4)(inputs)))
    with pytest.raises(UnsupportedFeatureError, match=r"is a whole model \(Dense\) where"):
        compare(_lstm(3), against=model, frameworks=["torch"])


def test_recurrent_layers_cannot_stand_for_a_whole_model() -> None:
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.LSTM(4)(inputs)))
    with pytest.raises(UnsupportedFeatureError, match=r"cannot stand for .* layers \w+ \(Dense\)"):
        compare(model, against=_lstm(3), frameworks=["torch"])


def test_initial_states_must_fit_the_second_model_as_well() -> None:
    states = [np.zeros((2, 4)), np.zeros((2, 4))]  # one LSTM layer's h and c
    with pytest.raises(WeightShapeError, match=r"2 arrays fit the source, but against .* takes 4"):
        compare(_lstm(3), against=_lstm(3, layers=2), initial_states=states, batch=2)
