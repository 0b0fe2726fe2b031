"""lint() on channels-first convolutions: Keras 3 on TensorFlow adds their bias along the
last axis wherever it has as many positions as there are filters. The trap is checked to
be real, against numpy's convolution of the same weights."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from xframe_bilstm import lint  # noqa: E402


def _model(use_bias: bool, data_format: str = "channels_first") -> keras.Model:
    x = keras.Input((4, None) if data_format == "channels_first" else (None, 4))
    conv = keras.layers.Conv1D(6, 1, data_format=data_format, use_bias=use_bias, name="conv")
    model = keras.Model(x, conv(x))
    if use_bias:  # a bias of distinct values, so the axis it is added along shows
        conv.set_weights([conv.get_weights()[0], np.arange(6, dtype="float32")])
    return model


def test_a_channels_first_bias_is_a_trap() -> None:
    (trap,) = lint(_model(use_bias=True))
    assert (trap.layer, trap.trap, trap.action) == ("conv", "channels-first bias", "converted")
    assert not lint(_model(use_bias=False))
    assert not lint(_model(use_bias=True, data_format="channels_last"))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the TensorFlow backend's")
def test_the_trap_is_keras_own_where_the_steps_equal_the_filters() -> None:
    model = _model(use_bias=True)
    x = np.random.default_rng(0).standard_normal((2, 4, 6)).astype("float32")
    kernel, bias = model.get_layer("conv").get_weights()  # (1, 4, 6), (6,)
    expected = np.einsum("bct,cf->bft", x, kernel[0]) + bias[None, :, None]
    assert not np.allclose(np.asarray(model(x)), expected, atol=1e-5)  # 6 steps: wrong axis
    longer = np.random.default_rng(0).standard_normal((2, 4, 7)).astype("float32")
    right = np.einsum("bct,cf->bft", longer, kernel[0]) + bias[None, :, None]
    np.testing.assert_allclose(np.asarray(model(longer)), right, atol=1e-5)


def test_a_channels_first_transposed_bias_is_the_same_trap() -> None:
    x = keras.Input((4, None))
    conv = keras.layers.Conv1DTranspose(6, 2, strides=2, data_format="channels_first", name="up")
    (trap,) = lint(keras.Model(x, conv(x)))
    assert (trap.layer, trap.trap) == ("up", "channels-first bias")
    if keras.backend.backend() == "tensorflow":  # 3 steps, doubled: as many as the filters
        conv.set_weights([np.zeros((2, 6, 4), "float32"), np.arange(6, dtype="float32")])
        y = np.asarray(conv(np.zeros((1, 4, 3), "float32")))
        assert not np.allclose(y, np.arange(6, dtype="float32")[None, :, None])
