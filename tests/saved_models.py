"""Keras models built and saved by the test run, with what Keras itself outputs for them.

Each builder returns ``(model, inputs)``: a built model with seeded random weights large
enough that a wrong gate, activation or mask changes the outputs, and a padded batch
(right padding, left padding and a hole) to run it on. :func:`save_case` saves the model
and writes Keras's own outputs next to it (``expected.npz``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

VOCABULARY = 30
STEPS = 6


def token_batch(rng: np.random.Generator, rows: int = 4) -> np.ndarray:
    """Token ids with 0 as padding: a full row, right padding, left padding, a hole."""
    ids = rng.integers(1, VOCABULARY, size=(rows, STEPS))
    ids[1, 4:] = 0
    ids[2, :3] = 0
    ids[3, 2] = 0
    return ids.astype("int32")


def randomize(model: Any, seed: int, scale: float = 0.6) -> None:
    """Replace every weight by seeded normal values (Keras's init is too tame to test)."""
    rng = np.random.default_rng(seed)
    model.set_weights(
        [(rng.standard_normal(w.shape) * scale).astype(w.dtype) for w in model.get_weights()]
    )


# --------------------------------------------------------------------------- Keras 3


def k3_classifier(keras: Any) -> tuple[Any, list[np.ndarray]]:
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            layers.Embedding(VOCABULARY, 8, mask_zero=True),
            layers.Bidirectional(layers.LSTM(6, return_sequences=True)),
            layers.Dropout(0.3),
            layers.Bidirectional(layers.GRU(5)),
            layers.Dense(3, activation="softmax"),
        ]
    )
    randomize(model, 1)
    return model, [token_batch(np.random.default_rng(11))]


def k3_plain_layers(keras: Any) -> tuple[Any, list[np.ndarray]]:
    """Masked plain layers: carried outputs, go_backwards, zero_output_for_mask."""
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            layers.Embedding(VOCABULARY, 5, mask_zero=True),
            layers.LSTM(4, return_sequences=True, go_backwards=True),
            layers.SimpleRNN(3, return_sequences=True, zero_output_for_mask=True),
            layers.GRU(4, return_sequences=True),
            layers.Bidirectional(layers.SimpleRNN(3, return_sequences=True), merge_mode="ave"),
            layers.TimeDistributed(layers.Dense(2, activation="tanh")),
        ]
    )
    randomize(model, 2)
    return model, [token_batch(np.random.default_rng(12))]


def k3_functional(keras: Any) -> tuple[Any, list[np.ndarray]]:
    """Two inputs, two outputs, Masking, Concatenate, pooling, TimeDistributed."""
    layers = keras.layers
    ids = keras.Input((None,), dtype="int32", name="ids")
    features = keras.Input((None, 3), name="features")
    embedded = layers.Embedding(VOCABULARY, 4, mask_zero=True)(ids)
    masked = layers.Masking(mask_value=0.0)(features)
    joined = layers.Concatenate()([embedded, masked])
    sequence = layers.Bidirectional(layers.LSTM(5, return_sequences=True), merge_mode="sum")(joined)
    per_step = layers.TimeDistributed(layers.Dense(2))(sequence)
    average = layers.GlobalAveragePooling1D()(per_step)
    peak = layers.GlobalMaxPooling1D()(sequence)
    logits = layers.Dense(1, activation="sigmoid")(layers.Concatenate()([average, peak]))
    model = keras.Model([ids, features], [logits, average])
    randomize(model, 3)
    rng = np.random.default_rng(13)
    tokens = token_batch(rng)
    values = rng.standard_normal((4, STEPS, 3)).astype("float32")
    values[0, 5] = 0.0  # masked by Masking only: the Embedding keeps the step
    return model, [tokens, values]


def k3_fixed_length(keras: Any) -> tuple[Any, list[np.ndarray]]:
    """No mask; Flatten, Reshape, Activation; Keras 3's hard_sigmoid is x/6 + 1/2."""
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((STEPS,), dtype="int32"),
            layers.Embedding(VOCABULARY, 4),
            layers.LSTM(3, return_sequences=True, recurrent_activation="hard_sigmoid"),
            layers.Flatten(),
            layers.Dense(6),
            layers.Reshape((2, 3)),
            layers.Activation("softmax"),
        ]
    )
    randomize(model, 4, scale=1.5)
    return model, [token_batch(np.random.default_rng(14))]


# --------------------------------------------------------------------------- tf_keras


def k2_classifier(k2: Any) -> tuple[Any, list[np.ndarray]]:
    """Keras 2: hard_sigmoid gates (0.2x + 0.5) and GRU reset_after=False."""
    layers = k2.layers
    ids = k2.Input((None,), dtype="int32")
    # tf_keras numbers default names per process: tests that name layers fix them here.
    x = layers.Embedding(VOCABULARY, 6, mask_zero=True, name="embedding")(ids)
    x = layers.Bidirectional(
        layers.LSTM(5, return_sequences=True, recurrent_activation="hard_sigmoid"), name="bidi"
    )(x)
    x = layers.GRU(4, reset_after=False, recurrent_activation="hard_sigmoid", name="gru")(x)
    model = k2.Model(ids, layers.Dense(2, activation="sigmoid")(x))
    randomize(model, 5, scale=1.5)
    return model, [token_batch(np.random.default_rng(15))]


def k2_time_major(k2: Any) -> tuple[Any, list[np.ndarray]]:
    layers = k2.layers
    model = k2.Sequential(
        [
            layers.InputLayer((None, 3)),
            layers.LSTM(4, time_major=True, return_sequences=True),
            layers.SimpleRNN(2, time_major=True),
            layers.Dense(2),
        ]
    )
    randomize(model, 6)
    # Keras 2 reads axis 0 as time here: 5 steps of 3 sequences.
    return model, [np.random.default_rng(16).standard_normal((5, 3, 3)).astype("float32")]


def k2_concatenated_masks(k2: Any) -> tuple[Any, list[np.ndarray]]:
    """Keras 2 keeps a step of a concatenation only where every input's mask keeps it."""
    layers = k2.layers
    left, right = k2.Input((None,), dtype="int32"), k2.Input((None,), dtype="int32")
    joined = layers.Concatenate()(
        [
            layers.Embedding(VOCABULARY, 3, mask_zero=True)(left),
            layers.Embedding(VOCABULARY, 2, mask_zero=True)(right),
        ]
    )
    x = layers.LSTM(4, return_sequences=True)(joined)
    x = layers.GlobalAveragePooling1D()(x)
    model = k2.Model([left, right], layers.Dense(2)(x))
    randomize(model, 7)
    rng = np.random.default_rng(17)
    return model, [token_batch(rng), token_batch(rng)[::-1].copy()]


def k2_cudnn(k2: Any) -> tuple[Any, list[np.ndarray]]:
    from tf_keras.api._v1.keras import layers as v1

    model = k2.Sequential(
        [
            k2.layers.InputLayer((None, 3)),
            v1.CuDNNLSTM(4, return_sequences=True),
            k2.layers.Bidirectional(v1.CuDNNGRU(3)),
            k2.layers.Dense(2),
        ]
    )
    randomize(model, 8)
    return model, [np.random.default_rng(18).standard_normal((3, STEPS, 3)).astype("float32")]


def k2_cudnn_oracle(k2: Any, path: Path) -> Any:
    """The CuDNN model with plain layers, loaded by tf_keras's own weight conversion."""
    layers = k2.layers
    model = k2.Sequential(
        [
            layers.InputLayer((None, 3)),
            layers.LSTM(4, return_sequences=True),
            layers.Bidirectional(layers.GRU(3, reset_after=True)),
            layers.Dense(2),
        ]
    )
    model.load_weights(str(path))
    return model


KERAS3: dict[str, tuple[Callable[[Any], Any], tuple[str, ...]]] = {
    "k3-classifier": (k3_classifier, (".keras", ".h5")),
    "k3-plain-layers": (k3_plain_layers, (".keras",)),
    "k3-functional": (k3_functional, (".keras", ".h5")),
    "k3-fixed-length": (k3_fixed_length, (".keras",)),
}
TF_KERAS: dict[str, Callable[[Any], Any]] = {
    "k2-classifier": k2_classifier,
    "k2-time-major": k2_time_major,
    "k2-concatenated-masks": k2_concatenated_masks,
    "k2-cudnn": k2_cudnn,
}


def outputs_of(model: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    result = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    result = result if isinstance(result, (list, tuple)) else [result]
    return [np.asarray(value) for value in result]


def save_case(directory: Path, path: Path, inputs: list[np.ndarray], outputs: list) -> None:
    arrays = {f"input_{i}": x for i, x in enumerate(inputs)}
    arrays.update({f"output_{i}": y for i, y in enumerate(outputs)})
    np.savez(directory / f"{path.name}.npz", **arrays)
