"""lint() on normalization and pooling layers: Keras's epsilon, TensorFlow's same padding,
a pool that ends a mask, and rms_scaling refused; read from the configuration only."""

from __future__ import annotations

import pytest

keras = pytest.importorskip("keras")

from xframe_bilstm import lint  # noqa: E402


def test_lint_lists_the_normalization_and_pooling_traps() -> None:
    layers = keras.layers
    ids = keras.Input((None,), dtype="int32")
    x = layers.Embedding(10, 4, mask_zero=True, name="embedding")(ids)
    x = layers.BatchNormalization(epsilon=0.01, name="bn")(x)
    x = layers.LayerNormalization(rms_scaling=True, name="ln")(x)
    x = layers.AveragePooling1D(2, padding="same", name="pool")(x)
    x = layers.MaxPooling1D(2, name="plain_pool")(x)
    found = {(t.layer, t.trap, t.action) for t in lint(keras.Model(ids, x))}
    assert {
        ("bn", "epsilon", "converted"),
        ("ln", "rms_scaling", "refused"),
        ("pool", "same padding", "converted"),
        ("pool", "mask ends", "converted"),
    } <= found
    assert not {trap for trap in found if trap[0] == "plain_pool"}  # no mask, valid padding
    (epsilon,) = [t for t in lint(keras.Model(ids, x)) if t.trap == "epsilon"]
    assert "0.01" in epsilon.detail
