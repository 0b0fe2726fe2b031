"""Keras models holding attention layers, with seeded random weights (never Keras's
initial ones, so a port that ignored a bias or a scale fails), and padded token ids."""

from __future__ import annotations

from typing import Any

import numpy as np

ATTENTION_CLASSES = ("Attention", "AdditiveAttention", "MultiHeadAttention")


def randomize_attention(model: Any, seed: int = 0) -> Any:
    """Give every attention layer random weights (scales away from 1, biases away from 0)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ in ATTENTION_CLASSES:
            drawn = [rng.normal(0.8, 0.6, w.shape).astype(w.dtype) for w in layer.get_weights()]
            layer.set_weights(drawn)
    return model


def padded_ids(vocabulary: int = 30, seed: int = 5) -> np.ndarray:
    """Rows padded on the right, on the left, not at all, and a one-step row."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocabulary, (4, 7)).astype("int32")
    ids[0, 4:] = 0  # right padded
    ids[1, :3] = 0  # left padded
    ids[3, 1:] = 0  # one valid step
    return ids


def self_attention_classifier(keras: Any) -> Any:
    """Embedding(mask_zero) -> Bidirectional(LSTM) -> Attention([h, h]) -> average -> Dense."""
    layers = keras.layers
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = layers.Embedding(30, 8, mask_zero=True, name="embedding")(ids)
    h = layers.Bidirectional(layers.LSTM(6, return_sequences=True), name="bilstm")(x)
    attended = layers.Attention(use_scale=True, name="attention")([h, h])
    pooled = layers.GlobalAveragePooling1D(name="average")(attended)
    model = keras.Model(ids, layers.Dense(3, name="out")(pooled), name="self_attention")
    return randomize_attention(model, seed=1)


def multi_head_classifier(keras: Any) -> Any:
    """Embedding(mask_zero) -> Bidirectional(LSTM) -> MultiHeadAttention(num_heads=2) ->
    Add (residual) -> LayerNormalization -> Dense, one output per step."""
    layers = keras.layers
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = layers.Embedding(30, 8, mask_zero=True, name="embedding")(ids)
    h = layers.Bidirectional(layers.LSTM(4, return_sequences=True), name="bilstm")(x)
    attended = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(h, h)
    y = layers.LayerNormalization(name="norm")(layers.Add(name="residual")([h, attended]))
    model = keras.Model(ids, layers.Dense(3, name="out")(y), name="multi_head")
    return randomize_attention(model, seed=2)


def two_sequence_model(
    keras: Any, make_layer: Any, *, with_key: bool, mha: bool, causal: bool = False
) -> Any:
    """Query and value token ids (each masked by its Embedding) into one attention layer
    (``make_layer()``), called on ``(query, value[, key])``; the key is a Dense of the value."""
    layers = keras.layers
    q_ids = keras.Input((None,), dtype="int32", name="q_ids")
    v_ids = keras.Input((None,), dtype="int32", name="v_ids")
    q = layers.Embedding(30, 6, mask_zero=True, name="q_embedding")(q_ids)
    v = layers.Embedding(30, 6, mask_zero=True, name="v_embedding")(v_ids)
    key = layers.Dense(6, name="key")(v) if with_key else None
    layer = make_layer()
    if mha:
        y = layer(q, v, key=key, use_causal_mask=causal)
    else:
        y = layer([q, v, key] if with_key else [q, v], use_causal_mask=causal)
    model = keras.Model([q_ids, v_ids], y, name="two_sequences")
    for embedding in ("q_embedding", "v_embedding"):
        weights = model.get_layer(embedding).get_weights()[0]
        rng = np.random.default_rng(len(embedding))
        model.get_layer(embedding).set_weights([rng.normal(0, 0.7, weights.shape)])
    return randomize_attention(model, seed=3)
