"""Keras models and one-layer cases holding normalization and pooling layers.

Moving statistics and affine weights are drawn at random (seeded), never Keras's
defaults, so a port that ignored them, or swapped the mean and the variance, fails.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def randomize_normalization(model: Any, seed: int = 0) -> Any:
    """Give every BatchNormalization, LayerNormalization and GroupNormalization layer
    random weights."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        name = type(layer).__name__
        if name not in ("BatchNormalization", "LayerNormalization", "GroupNormalization"):
            continue
        weights = layer.get_weights()
        drawn = [rng.normal(0.0, 0.8, w.shape).astype(w.dtype) for w in weights]
        if name == "BatchNormalization":  # the last weight is the moving variance
            drawn[-1] = rng.uniform(0.3, 2.5, weights[-1].shape).astype(weights[-1].dtype)
        layer.set_weights(drawn)
    return model


def sequence_model(keras: Any) -> Any:
    """(T, F) -> BatchNormalization -> LSTM -> LayerNormalization -> GroupNormalization ->
    MaxPooling1D -> GRU -> Dense."""
    layers = keras.layers
    x = keras.Input((None, 4), name="features")
    y = layers.BatchNormalization(name="bn")(x)
    y = layers.LSTM(6, return_sequences=True, name="lstm")(y)
    y = layers.LayerNormalization(name="ln")(y)
    y = layers.GroupNormalization(3, epsilon=1e-2, name="gn")(y)
    y = layers.MaxPooling1D(name="pool")(y)
    y = layers.GRU(5, name="gru")(y)
    model = keras.Model(x, layers.Dense(3, name="out")(y), name="sequence_normpool")
    return randomize_normalization(model, seed=1)


def image_model(keras: Any) -> Any:
    """(H, W, C) -> BatchNormalization -> MaxPooling2D(same, 2) -> AveragePooling2D ->
    GlobalAveragePooling2D -> Dense; odd sizes, so "same" pads unevenly."""
    layers = keras.layers
    x = keras.Input((7, 9, 3), name="image")
    y = layers.BatchNormalization(name="bn")(x)
    y = layers.MaxPooling2D(3, strides=2, padding="same", name="max_pool")(y)
    y = layers.AveragePooling2D(2, strides=1, padding="same", name="average_pool")(y)
    y = layers.GlobalAveragePooling2D(name="global")(y)
    model = keras.Model(x, layers.Dense(2, name="out")(y), name="image_normpool")
    return randomize_normalization(model, seed=2)


def masked_model(keras: Any) -> Any:
    """Token ids with a mask that BatchNormalization, LayerNormalization,
    GroupNormalization (Keras 3: its statistics count the padded steps) and the LSTM pass
    on, that MaxPooling1D ends, and a masked average that reads the mask passed on."""
    layers = keras.layers
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = layers.Embedding(20, 4, mask_zero=True, name="embedding")(ids)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.LayerNormalization(name="ln")(x)
    x = layers.GroupNormalization(2, name="gn")(x)
    sequence = layers.LSTM(5, return_sequences=True, name="lstm")(x)
    pooled = layers.MaxPooling1D(2, padding="same", name="pool")(sequence)
    after_pool = layers.GlobalAveragePooling1D(name="unmasked_average")(pooled)
    masked = layers.GlobalAveragePooling1D(name="masked_average")(sequence)
    joined = layers.Concatenate(name="joined")([after_pool, masked])
    model = keras.Model(ids, layers.Dense(2, name="out")(joined), name="masked_normpool")
    return randomize_normalization(model, seed=3)


def layer_cases(keras: Any) -> dict[str, tuple[tuple[int | None, ...], Any]]:
    """One layer per option that changes the math: (input shape, layer)."""
    layers = keras.layers
    return {
        "bn_channels_first": ((3, 5, 4), layers.BatchNormalization(axis=1, epsilon=0.2)),
        "bn_no_center_scale": ((6, 3), layers.BatchNormalization(center=False, scale=False)),
        "bn_scale_only": ((4,), layers.BatchNormalization(center=False)),
        "ln_two_axes": ((5, 3), layers.LayerNormalization(axis=[1, 2], epsilon=1e-5)),
        "ln_middle_axis": ((4, 3, 2), layers.LayerNormalization(axis=2)),
        "ln_no_center": ((None, 3), layers.LayerNormalization(center=False)),
        "gn_channels_last": ((None, 6), layers.GroupNormalization(3, epsilon=1e-4)),
        "gn_instance_channels_first": ((4, 5), layers.GroupNormalization(-1, axis=1)),
        "gn_image_no_center": ((3, 4, 6), layers.GroupNormalization(2, center=False)),
        # a zero variance divides by Keras's epsilon, 1e-7
        "normalization_given": (
            (None, 3),
            layers.Normalization(mean=[0.5, -1.0, 2.0], variance=[4.0, 0.25, 0.0]),
        ),
        "max1d_same": ((7, 3), layers.MaxPooling1D(3, strides=2, padding="same")),
        "avg1d_same": ((None, 3), layers.AveragePooling1D(4, strides=3, padding="same")),
        "avg1d_valid_channels_first": (
            (3, 8),
            layers.AveragePooling1D(3, strides=2, data_format="channels_first"),
        ),
        "max2d_valid": ((7, 6, 2), layers.MaxPooling2D((2, 3), strides=(1, 2))),
        "avg2d_same_channels_first": (
            (2, 5, 7),
            layers.AveragePooling2D(3, strides=2, padding="same", data_format="channels_first"),
        ),
        "max2d_same_channels_first": (
            (2, 6, 5),
            layers.MaxPool2D(2, padding="same", data_format="channels_first"),
        ),
        "global_max2d_keepdims": ((4, 5, 3), layers.GlobalMaxPooling2D(keepdims=True)),
        "global_avg2d_channels_first": (
            (3, 4, 5),
            layers.GlobalAvgPool2D(data_format="channels_first"),
        ),
    }


def layer_model(keras: Any, name: str) -> Any:
    """A model of ``Input -> one case layer``, its normalization weights random."""
    shape, layer = layer_cases(keras)[name]
    x = keras.Input(shape, name="x")
    return randomize_normalization(keras.Model(x, layer(x), name=name), seed=len(name))
