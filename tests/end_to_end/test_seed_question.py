"""The question this project answers: why is Keras's Bidirectional(forward, backward_layer=...)
not the concatenation of the two layers run alone?

Because Bidirectional re-creates the forward layer from its config (fresh weights), keeps the
given backward layer as it is, and flips the backward output back into input time order.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import keras_to_torch  # noqa: E402
from xframe_bilstm.testing import assert_equivalent  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


@pytest.fixture
def layers():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).standard_normal((1, 5, 10)).astype(np.float32)
    forward = keras.layers.LSTM(2, return_sequences=True)
    backward = keras.layers.LSTM(2, return_sequences=True, go_backwards=True)
    f_out, b_out = np.asarray(forward(x)), np.asarray(backward(x))
    bidirectional = keras.layers.Bidirectional(forward, backward_layer=backward)
    fb_out = np.asarray(bidirectional(x))
    return x, forward, backward, bidirectional, f_out, b_out, fb_out


def test_forward_weights_are_new_and_backward_layer_is_kept(layers) -> None:
    _, forward, backward, bidirectional, *_ = layers
    assert bidirectional.forward_layer is not forward
    assert any(
        not np.array_equal(mine, theirs)
        for mine, theirs in zip(forward.get_weights(), bidirectional.forward_layer.get_weights())
    )
    assert bidirectional.backward_layer is backward


def test_output_is_not_the_naive_concatenation(layers) -> None:
    *_, f_out, b_out, fb_out = layers
    assert not np.allclose(fb_out, np.concatenate([f_out, b_out], axis=-1), atol=1e-3)


def test_with_copied_weights_it_is_forward_then_flipped_backward(layers) -> None:
    x, forward, _, bidirectional, f_out, b_out, _ = layers
    bidirectional.forward_layer.set_weights(forward.get_weights())
    fb_out = np.asarray(bidirectional(x))
    expected = np.concatenate([f_out, b_out[:, ::-1]], axis=-1)
    np.testing.assert_allclose(fb_out, expected, rtol=0, atol=1e-6)
    # Without the flip only the middle step (T=5, t=2) lines up.
    naive = np.concatenate([f_out, b_out], axis=-1)
    assert not np.allclose(fb_out[:, [0, 1, 3, 4]], naive[:, [0, 1, 3, 4]], atol=1e-3)


def test_converted_module_reproduces_the_bidirectional_layer(layers) -> None:
    x, _, _, bidirectional, *_ = layers
    module = keras_to_torch(bidirectional)
    with torch.no_grad():
        actual = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(actual, np.asarray(bidirectional(x)), rtol=0, atol=1e-5)
    # And on every framework, against the float64 reference, within the derived tolerance.
    assert_equivalent(bidirectional, module, inputs=x)
