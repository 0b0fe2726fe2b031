"""Keras's ``Dot`` layer, as Keras seq2seq tutorials write Luong's attention: scores
``Dot(axes=[2, 2])([decoder, encoder])``, softmax, context ``Dot(axes=[2, 1])([weights,
encoder])``. Expected values come from the Keras model's own call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm import UnsupportedFeatureError, compare, keras_to_torch  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402
from xframe_bilstm.onnx_converters import to_onnx  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch, pytest.mark.onnx]


def _luong(framework: Any) -> Any:
    """An encoder LSTM whose final states start the decoder's; each decoder step attends
    over the encoder's steps, its context joined to its output."""
    L = framework.layers
    src, tgt = framework.Input((None,), name="src"), framework.Input((None,), name="tgt")
    encoded, h, c = L.LSTM(8, return_sequences=True, return_state=True, name="encoder")(
        L.Embedding(20, 6, name="source_embedding")(src)
    )
    target = L.Embedding(20, 6, name="target_embedding")(tgt)
    decoded = L.LSTM(8, return_sequences=True, name="decoder")(target, initial_state=[h, c])
    scores = L.Dot(axes=[2, 2], name="scores")([decoded, encoded])  # (B, target, source)
    weights = L.Activation("softmax", name="weights")(scores)
    context = L.Dot(axes=[2, 1], name="context")([weights, encoded])  # (B, target, 8)
    joined = L.Concatenate(name="joined")([context, decoded])
    out = L.TimeDistributed(L.Dense(20, activation="softmax"), name="out")(joined)
    return framework.Model([src, tgt], out)


def _inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(1, 20, (3, 9)), rng.integers(1, 20, (3, 5))]


@pytest.mark.parametrize("major", [3, 2])
def test_luong_attention_ports_exports_and_compares(major: int, tmp_path: Path) -> None:
    framework = keras if major == 3 else pytest.importorskip("tf_keras")
    model = _luong(framework)
    path = tmp_path / ("luong.keras" if major == 3 else "luong.h5")
    model.save(path)
    graph = read_model(path)
    assert {r.name: r.options for r in graph.layers if r.kind == "matmul"} == {
        "scores": {"transpose_a": False, "transpose_b": True},
        "context": {"transpose_a": False, "transpose_b": False},
    }
    xs = _inputs()
    expected = np.asarray(model(xs))
    tolerance = derived_tolerance(graph, xs)
    port = keras_to_torch(path)  # verified against the model Keras loads
    with torch.no_grad():
        ported = port(*map(torch.from_numpy, xs)).numpy()
    np.testing.assert_allclose(ported, expected, rtol=0, atol=tolerance)
    session = ort.InferenceSession(to_onnx(path).SerializeToString())
    feeds = {i.name: x for i, x in zip(session.get_inputs(), xs)}
    np.testing.assert_allclose(session.run(None, feeds)[0], expected, rtol=0, atol=tolerance)
    assert compare(path, frameworks=["torch", "keras", "onnxruntime"])


@pytest.mark.parametrize(("axes", "normalize"), [(1, False), ([2, 2], True)], ids=["one", "cosine"])
def test_a_dot_of_sequences_not_read_is_refused_by_name(axes, normalize) -> None:
    a, b = keras.Input((5, 4)), keras.Input((5, 4))
    dot = keras.layers.Dot(axes=axes, normalize=normalize, name="similarity")
    with pytest.raises(UnsupportedFeatureError, match=r"'similarity'.*axes=.*ranks \[3, 3\]"):
        keras_to_torch(keras.Model([a, b], dot([a, b])))


def test_a_dot_over_the_last_axis_reads_the_rank_of_its_inputs() -> None:
    a, b = keras.Input((5, 4)), keras.Input((6, 4))
    model = keras.Model([a, b], keras.layers.Dot(axes=-1)([a, b]))  # (batch, 5, 6) scores
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((3, 5, 4)).astype("float32"), rng.standard_normal((3, 6, 4))]
    xs[1] = xs[1].astype("float32")
    port = keras_to_torch(model)
    with torch.no_grad():
        ported = port(*map(torch.from_numpy, xs)).numpy()
    np.testing.assert_allclose(ported, np.asarray(model(xs)), rtol=1e-5, atol=1e-6)
