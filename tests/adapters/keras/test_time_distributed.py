"""TimeDistributed over pooling and normalization layers, read from a Keras model: rebuilt
in Keras and run by the reference, the torch port and onnxruntime on the ONNX export alike.
Expected values are the Keras model's own call."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import compare  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch, pytest.mark.onnx]
pytest.importorskip("onnxruntime")


def test_pooling_and_normalization_per_step_agree() -> None:
    x = keras.Input((None, 6, 4))
    y = keras.layers.TimeDistributed(keras.layers.MaxPooling1D(2), name="pool")(x)
    y = keras.layers.TimeDistributed(keras.layers.BatchNormalization(), name="norm")(y)
    y = keras.layers.TimeDistributed(keras.layers.Flatten(), name="flat")(y)
    model = keras.Model(x, keras.layers.LSTM(5, return_sequences=True)(y))
    norm = model.get_layer("norm").layer  # statistics other than the initial ones
    norm.set_weights([w + 0.3 * (i + 1) for i, w in enumerate(norm.get_weights())])
    inputs = np.random.default_rng(0).standard_normal((2, 7, 6, 4)).astype("float32")
    _assert_agrees_everywhere(model, inputs)


def test_two_dimensional_pooling_per_frame_exports() -> None:
    """A video-style front end: 2-D pooling and global pooling of each frame."""
    x = keras.Input((None, 8, 6, 3))
    y = keras.layers.TimeDistributed(keras.layers.Conv2D(4, 3, padding="same"))(x)
    y = keras.layers.TimeDistributed(keras.layers.AveragePooling2D(2, padding="same"))(y)
    y = keras.layers.TimeDistributed(keras.layers.GlobalMaxPooling2D())(y)
    model = keras.Model(x, keras.layers.GRU(5)(y))
    inputs = np.random.default_rng(1).standard_normal((2, 5, 8, 6, 3)).astype("float32")
    _assert_agrees_everywhere(model, inputs)


def _assert_agrees_everywhere(model, inputs: np.ndarray) -> None:
    """The model as Keras loads it, its torch port and its ONNX export on onnxruntime agree,
    nothing left out."""
    report = compare(model, inputs=inputs, frameworks=["keras", "torch", "onnxruntime"])
    assert report, report.lines()
    labels = {pair.actual for pair in report.pairs} | {pair.expected for pair in report.pairs}
    assert {"keras[cpu,float32]@original", "torch[cpu,float32]"} <= labels
    assert any(label.startswith("onnxruntime") for label in labels)
    assert not report.left_out
