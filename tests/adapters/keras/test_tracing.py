"""Traced: Keras calls compiled without AutoGraph compute what AutoGraph's graph computes, and
a call that needs AutoGraph gets it."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # before TensorFlow
keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from xframe_bilstm.adapters.keras.tracing import Traced  # noqa: E402

pytestmark = pytest.mark.keras

_X = np.random.default_rng(0).standard_normal((3, 9, 4)).astype("float32")
_MASK = np.arange(9)[None, :] < np.array([9, 5, 2])[:, None]


def _layers() -> dict[str, object]:
    lstm = keras.layers.LSTM(5, return_sequences=True, return_state=True)
    return {
        "lstm with states": lstm,
        "bidirectional gru": keras.layers.Bidirectional(
            keras.layers.GRU(5, return_sequences=True, reset_after=False)
        ),
        "simple_rnn backwards": keras.layers.SimpleRNN(5, go_backwards=True),
    }


@pytest.mark.parametrize("name", list(_layers()))
@pytest.mark.parametrize("masked", [False, True])
def test_keras_layers_trace_without_autograph_to_autographs_outputs(
    name: str, masked: bool
) -> None:
    layer = _layers()[name]
    layer.build((None, None, 4))
    mask = tf.constant(_MASK) if masked else None

    def call(x, mask):
        return layer(x, mask=mask, training=False)

    traced = Traced(call)
    got = keras.tree.flatten(traced(tf.constant(_X), mask))
    # The graph as tf.function with AutoGraph (its default) compiles it, as before.
    expected = keras.tree.flatten(tf.function(call)(tf.constant(_X), mask))
    assert traced.autograph is False
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_call_that_branches_on_a_tensor_is_traced_with_autograph() -> None:
    def positive_doubled(x):
        if tf.reduce_sum(x) > 0:  # Python control flow on a tensor: only AutoGraph compiles it
            return x * 2.0
        return -x

    traced = Traced(positive_doubled)
    x = np.abs(_X)
    np.testing.assert_array_equal(traced(tf.constant(x)).numpy(), x * 2.0)  # hand-derived
    np.testing.assert_array_equal(traced(tf.constant(-x)).numpy(), x)
    assert traced.autograph is True


def test_a_call_that_fails_either_way_raises_autographs_error() -> None:
    def wrong(x):
        return tf.matmul(x, tf.ones((7, 2)))  # 4 features against 7 rows

    with pytest.raises(Exception) as plain:
        tf.function(wrong)(tf.constant(_X))
    traced = Traced(wrong)
    with pytest.raises(type(plain.value)) as ours:
        traced(tf.constant(_X))
    assert str(ours.value).splitlines()[0] == str(plain.value).splitlines()[0]
    assert traced.autograph is True
