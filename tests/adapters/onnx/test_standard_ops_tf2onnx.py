"""Keras models exported by tf2onnx run in ``onnx_to_torch`` as onnxruntime runs them.

tf2onnx writes a Keras model's Dense layers as ``MatMul``, its convolutions, pooling and
normalizations as standard operators around the native ``LSTM`` nodes. Runs where tf2onnx
is installed.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # before TensorFlow
ort = pytest.importorskip("onnxruntime")
tf2onnx = pytest.importorskip("tf2onnx")
keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from xframe_bilstm import onnx_to_torch  # noqa: E402


def _model(kind: str) -> keras.Model:
    layers = keras.layers
    x = keras.Input((9, 5), name="x")
    if kind == "classifier":  # a BiLSTM classifier
        h = layers.Bidirectional(layers.LSTM(6))(x)
        h = layers.Dropout(0.2)(layers.Dense(8, activation="relu")(h))
        y = layers.Dense(3, activation="softmax")(h)
    elif kind == "convolutional":
        h = layers.Conv1D(4, 3, padding="same", activation="elu")(x)
        h = layers.MaxPooling1D(2, padding="same")(layers.BatchNormalization()(h))
        h = layers.Bidirectional(layers.LSTM(6, return_sequences=True))(h)
        h = layers.GlobalAveragePooling1D()(layers.LayerNormalization()(h))
        y = layers.Dense(2, activation="sigmoid")(h)
    else:  # a causal dilated convolution, a tagger's head
        h = layers.LeakyReLU(0.1)(layers.Conv1D(4, 3, padding="causal", dilation_rate=2)(x))
        h = layers.LSTM(6, return_sequences=True)(layers.AveragePooling1D(2)(h))
        h = layers.TimeDistributed(layers.Dense(4, activation="softplus"))(h)
        h = layers.Dense(3, activation="hard_sigmoid")(layers.Dense(3, activation="selu")(h))
        y = layers.Softmax(axis=1)(h)
    model = keras.Model(x, y)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.moving_mean.assign(rng.uniform(-1, 1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2, layer.moving_variance.shape))
    return model


@pytest.mark.parametrize("kind", ["classifier", "convolutional", "tagger_head"])
def test_tf2onnx_exports_run_as_onnxruntime_runs_them(kind: str) -> None:
    signature = (tf.TensorSpec((None, 9, 5), tf.float32, name="x"),)
    proto, _ = tf2onnx.convert.from_keras(_model(kind), input_signature=signature, opset=15)
    graph = proto.SerializeToString()
    assert {"MatMul", "LSTM"} <= {node.op_type for node in proto.graph.node}
    imported = onnx_to_torch(graph)  # verify=True: checked against onnxruntime already

    x = np.random.default_rng(1).standard_normal((3, 9, 5)).astype(np.float32)
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {proto.graph.input[0].name: x})
    with torch.no_grad():
        actual = imported(torch.from_numpy(x)).numpy()
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, atol=2e-5, rtol=1e-5)
