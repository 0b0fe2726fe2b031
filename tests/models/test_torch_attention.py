"""Each attention option that changes the math, in a Keras model whose query and value carry
their own masks: the torch port (verified against the model by keras_to_torch), the float64
reference, the ONNX export and the Keras rebuild all compute what Keras computes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm import keras_to_torch  # noqa: E402
from xframe_bilstm.adapters.keras.graph import graph_to_keras  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.models.live import graph_from_keras  # noqa: E402
from xframe_bilstm.onnx_converters import to_onnx  # noqa: E402
from xframe_bilstm.reference.graph import run_model_reference  # noqa: E402

from .. import attention_models  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch, pytest.mark.onnx]
L = keras.layers
CASES = {
    "dot": (lambda: L.Attention(name="attention"), False, False, False),
    "dot_scaled_causal": (
        lambda: L.Attention(use_scale=True, name="attention"),
        False,
        False,
        True,
    ),
    "concat_key": (lambda: L.Attention(score_mode="concat", name="attention"), True, False, False),
    "concat_scaled_causal": (
        lambda: L.Attention(score_mode="concat", use_scale=True, dropout=0.3, name="attention"),
        True,
        False,
        True,
    ),
    "additive": (lambda: L.AdditiveAttention(name="attention"), False, False, False),
    "additive_unscaled_key": (
        lambda: L.AdditiveAttention(use_scale=False, name="attention"),
        True,
        False,
        True,
    ),
    "mha": (lambda: L.MultiHeadAttention(2, 3, name="mha"), False, True, False),
    "mha_value_dim_output_shape_key": (
        lambda: L.MultiHeadAttention(3, 2, value_dim=4, output_shape=5, name="mha"),
        True,
        True,
        False,
    ),
    "mha_no_bias_causal": (
        lambda: L.MultiHeadAttention(2, 4, use_bias=False, name="mha"),
        False,
        True,
        True,
    ),
    # With dropout, Keras 3 zeroes the weights of masked positions after the softmax.
    "mha_dropout_causal_key": (
        lambda: L.MultiHeadAttention(2, 3, dropout=0.2, name="mha"),
        True,
        True,
        True,
    ),
}
Q_IDS = np.array([[3, 4, 5, 0, 0], [0, 0, 6, 7, 8], [1, 2, 3, 4, 5]], dtype="int32")
V_IDS = np.array([[9, 8, 0, 0, 0, 0], [0, 5, 6, 7, 8, 9], [0, 0, 0, 0, 0, 0]], dtype="int32")


def _model(name: str) -> Any:
    make, with_key, mha, causal = CASES[name]
    return attention_models.two_sequence_model(
        keras, make, with_key=with_key, mha=mha, causal=causal
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_option_is_computed_as_keras_does(name: str) -> None:
    model = _model(name)
    inputs = [Q_IDS, V_IDS]
    expected = np.asarray(model(inputs))
    port = keras_to_torch(model)  # raises when the port disagrees with model(x)
    with torch.no_grad():
        ported = port(*(torch.from_numpy(x) for x in inputs)).numpy()
    np.testing.assert_allclose(ported, expected, rtol=0, atol=2e-5)
    graph = graph_from_keras(model)
    (reference,) = run_model_reference(graph, inputs)
    np.testing.assert_allclose(reference, expected, rtol=0, atol=2e-5)
    session = ort.InferenceSession(to_onnx(model).SerializeToString())
    feed = {i.name: x.astype(np.int64) for i, x in zip(session.get_inputs(), inputs)}
    np.testing.assert_allclose(session.run(None, feed)[0], expected, rtol=0, atol=2e-5)
    rebuilt = graph_to_keras(graph)
    np.testing.assert_allclose(np.asarray(rebuilt(inputs)), expected, rtol=0, atol=2e-5)


def test_the_options_read_are_the_layers() -> None:
    record = graph_from_keras(_model("mha_value_dim_output_shape_key")).layer("mha")
    assert record.inputs == ("q_embedding", "v_embedding", "key")
    assert {k: record.options[k] for k in ("num_heads", "key_dim", "value_dim")} == {
        "num_heads": 3,
        "key_dim": 2,
        "value_dim": 4,
    }
    assert record.options["output_shape"] == 5
    assert record.weights["output_kernel"].shape == (3, 4, 5)
    causal = graph_from_keras(_model("concat_scaled_causal")).layer("attention")
    assert causal.options["use_causal_mask"] and causal.options["score"] == "concat"


def test_the_fully_masked_rows_differ_with_dropout() -> None:
    """A value row with every step masked: Keras 3 without dropout takes every value evenly,
    with dropout none; each port follows the layer it was read from."""
    rows = {}
    for name in ("mha", "mha_dropout_causal_key"):
        model = _model(name)
        graph = graph_from_keras(model)
        rows[name] = graph.layer("mha").options["masked_rows"]
        port = keras_to_torch(model)
        with torch.no_grad():
            out = port(torch.from_numpy(Q_IDS), torch.from_numpy(V_IDS)).numpy()
        np.testing.assert_allclose(out[2], np.asarray(model([Q_IDS, V_IDS]))[2], atol=2e-5)
    assert rows == {"mha": "uniform", "mha_dropout_causal_key": "zero"}


def test_return_attention_scores_is_refused_by_name() -> None:
    q = keras.Input((None, 4))
    out, _ = L.Attention(name="att")([q, q], return_attention_scores=True)
    model = keras.Model(q, out)
    with pytest.raises(UnsupportedFeatureError, match=r"'att'.*return_attention_scores"):
        keras_to_torch(model)


def test_attention_over_other_axes_is_refused_by_name() -> None:
    x = keras.Input((3, 5, 4))
    model = keras.Model(x, L.MultiHeadAttention(2, 2, attention_axes=(1, 2), name="m")(x, x))
    with pytest.raises(UnsupportedFeatureError, match=r"'m'.*attention_axes=\[1, 2\]"):
        keras_to_torch(model)


def test_an_explicit_attention_mask_is_refused_by_name() -> None:
    x = keras.Input((None, 4))
    allowed = keras.Input((None, None), dtype="bool")
    out = L.MultiHeadAttention(2, 2, name="m")(x, x, attention_mask=allowed)
    with pytest.raises(UnsupportedFeatureError, match=r"'m'.*attention_mask"):
        keras_to_torch(keras.Model([x, allowed], out))


def test_a_keras2_causal_multi_head_attention_with_a_key_is_read() -> None:
    tf_keras = pytest.importorskip("tf_keras")
    make = lambda: tf_keras.layers.MultiHeadAttention(2, 3, name="mha")  # noqa: E731
    model = attention_models.two_sequence_model(
        tf_keras, make, with_key=True, mha=True, causal=True
    )
    graph = graph_from_keras(model)
    record = graph.layer("mha")
    assert record.inputs == ("q_embedding", "v_embedding", "key")
    assert record.options["use_causal_mask"] and record.options["masked_rows"] == "uniform"
    expected = model([Q_IDS, V_IDS]).numpy()
    (reference,) = run_model_reference(graph, [Q_IDS, V_IDS])
    np.testing.assert_allclose(reference, expected, rtol=0, atol=2e-5)
    keras_to_torch(model)  # verified against the model
