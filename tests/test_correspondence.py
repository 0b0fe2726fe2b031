"""compare(source, against=port) where the two return different things: a Keras LSTM that
returns its last step against a native nn.LSTM that returns the whole sequence and
(h_n, c_n). Outputs are matched by meaning, or refused by name; never a numpy error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, keras_to_torch  # noqa: E402
from xframe_bilstm.factories import random_stack  # noqa: E402
from xframe_bilstm.runner import compare  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def _weights(layer, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype("float32") for w in layer.weights])


def _saved(tmp_path: Path, layer, name: str) -> tuple[Path, Path]:
    """The Keras model file of ``layer`` on (None, 3) inputs, and its nn state_dict file."""
    model = keras.Sequential([keras.Input((None, 3)), layer])
    _weights(layer)
    keras_path = tmp_path / f"{name}.keras"
    model.save(keras_path)
    torch_path = tmp_path / f"{name}.pt"
    torch.save(keras_to_torch(layer).rnns[0].state_dict(), torch_path)
    return keras_path, torch_path


@pytest.mark.parametrize(
    ("layer", "matched"),
    [
        pytest.param(lambda: keras.layers.LSTM(4), "at each row's last valid step", id="lstm"),
        pytest.param(
            lambda: keras.layers.Bidirectional(keras.layers.LSTM(4)), "at step 0", id="bilstm"
        ),
    ],
)
def test_a_keras_last_step_matches_a_native_lstm_sequence(tmp_path, layer, matched) -> None:
    # The case: (4, 20, 4) sequences of the port against the (4, 4) last step.
    keras_path, torch_path = _saved(tmp_path, layer(), "model")
    report = compare(str(keras_path), against=str(torch_path), frameworks=["torch"])
    assert report, "\n".join(report.lines())
    assert any("@against" in pair.label for pair in report.pairs)
    assert matched in report.correspondence
    assert report.to_dict()["correspondence"] == report.correspondence
    assert matched in report.to_markdown()


def test_a_wrong_native_port_fails_on_the_last_step_instead_of_crashing(tmp_path) -> None:
    keras_path, torch_path = _saved(tmp_path, keras.layers.LSTM(4), "model")
    state = torch.load(torch_path)
    state["bias_hh_l0"][4:8] += 0.5  # the forget gate's bias
    torch.save(state, torch_path)
    report = compare(str(keras_path), against=str(torch_path), frameworks=["torch"])
    assert not report
    broken = [pair for pair in report.pairs if "@against" in pair.label]
    assert broken and not any(broken)
    assert all(array.shape == (4, 4) for pair in broken for array in pair.comparison.arrays)


def test_states_and_merge_modes_come_from_h_n_and_padded_rows(tmp_path) -> None:
    # A sum-merged Bidirectional returning its states, against a time-major nn.LSTM given
    # initial states and lengths: its (h_n, c_n) and the sum of the halves' last valid steps.
    # Had the port ignored the states or the lengths, it would disagree with the reference.
    bilstm = keras.layers.Bidirectional(keras.layers.LSTM(4, return_state=True), merge_mode="sum")
    bilstm.build((None, None, 3))
    _weights(bilstm, seed=1)
    native = keras_to_torch(bilstm).rnns[0]
    time_major = torch.nn.LSTM(3, 4, bidirectional=True)
    time_major.load_state_dict(native.state_dict())
    rng = np.random.default_rng(2)
    states = [rng.standard_normal((4, 4)) for _ in range(4)]
    lengths = [7, 3, 1, 7]
    report = compare(bilstm, against=time_major, initial_states=states, lengths=lengths, steps=7)
    assert report, "\n".join(report.lines())
    for name in ("h_n[0]", "h_n[1]", "c_n[0]", "c_n[1]", "sum("):
        assert name in report.correspondence


def test_outputs_with_no_counterpart_are_refused_by_name() -> None:
    last_with_states = keras.layers.LSTM(4, return_state=True)
    last_with_states.build((None, None, 3))
    sequence = keras.layers.LSTM(4, return_sequences=True)
    sequence.build((None, None, 3))
    with pytest.raises(UnsupportedFeatureError) as error:
        compare(last_with_states, against=keras_to_torch(sequence), frameworks=["torch"])
    message = str(error.value)
    assert "c (4, 4)" in message and "output (4, 20, 4)" in message
    assert "return_state=False" in message


def test_a_bidirectional_port_of_a_forward_layer_is_refused() -> None:
    forward = keras.layers.LSTM(4)
    forward.build((None, None, 3))
    with pytest.raises(UnsupportedFeatureError, match=r"forward.*bidirectional"):
        compare(forward, against=torch.nn.LSTM(3, 4, bidirectional=True), frameworks=["torch"])


def test_outputs_of_other_shapes_fail_the_pair_without_a_numpy_error() -> None:
    source = random_stack(np.random.default_rng(0), "lstm", 3, 4)
    wider = random_stack(np.random.default_rng(0), "lstm", 3, 5)
    report = compare(source, against=wider, frameworks=["torch"], steps=6)
    assert not report
    (pair,) = [pair for pair in report.pairs if "@against" in pair.label]
    assert "shape (4, 6, 5) where (4, 6, 4) was expected" in pair.summary()


@pytest.fixture
def whole_model(tmp_path) -> Path:
    """A Keras model with a Dense head after its last-step LSTM."""
    model = keras.Sequential(
        [keras.Input((None, 3)), keras.layers.LSTM(4), keras.layers.Dense(2, name="head")]
    )
    path = tmp_path / "whole.keras"
    model.save(path)
    return path


def test_a_lone_lstm_is_refused_as_the_port_of_a_whole_model(whole_model, tmp_path) -> None:
    state_dict = tmp_path / "lstm.pt"
    torch.save(torch.nn.LSTM(3, 4, batch_first=True).state_dict(), state_dict)
    for against in (str(state_dict), torch.nn.LSTM(3, 4, batch_first=True)):
        with pytest.raises(UnsupportedFeatureError, match=r"layers head \(Dense\) it lacks"):
            compare(str(whole_model), against=against, frameworks=["torch"])


def test_a_port_returning_nested_tuples_is_compared_not_crashed(whole_model) -> None:
    port = keras_to_torch(str(whole_model))

    class Nested(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.port = port

        def forward(self, x):
            y = self.port(x)
            return y, (y + 1,)  # one output more than the model, inside a tuple

    report = compare(str(whole_model), against=Nested(), frameworks=["torch"])
    assert not bool(report)
    assert report.runs[-1].error == "returned 2 arrays where 1 were expected"
