"""Whole Keras models exported to ONNX (graph_to_onnx, to_onnx) against Keras's own call and
the float64 reference, on inputs padded on the right, on the left, with holes and empty rows."""

from __future__ import annotations

import itertools
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
keras = pytest.importorskip("keras")

from xframe_bilstm import compare  # noqa: E402
from xframe_bilstm.adapters.onnx import graph_to_onnx, newest_runtime_opset  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.factories import random_layer  # noqa: E402
from xframe_bilstm.graph import LayerRecord, ModelGraph  # noqa: E402
from xframe_bilstm.inputs import example_inputs  # noqa: E402
from xframe_bilstm.models.live import graph_from_keras  # noqa: E402
from xframe_bilstm.onnx_converters import to_onnx  # noqa: E402
from xframe_bilstm.reference import run_model_reference  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.onnx]


def _tagger() -> Any:
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = keras.layers.Embedding(30, 6, mask_zero=True, name="embedding")(ids)
    x = keras.layers.Bidirectional(keras.layers.LSTM(5, return_sequences=True), name="bilstm")(x)
    tags = keras.layers.Dense(4, activation="softmax", name="tags")(x)
    return keras.Model(ids, tags, name="tagger")


def _classifier() -> Any:
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = keras.layers.Embedding(30, 6, mask_zero=True, name="embedding")(ids)
    x = keras.layers.GRU(5, name="gru")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    label = keras.layers.Dense(3, activation="sigmoid", name="label")(x)
    return keras.Model(ids, label, name="classifier")


def _masked_features() -> Any:
    features = keras.Input((None, 3), name="features")
    x = keras.layers.Masking(mask_value=-1.0, name="masking")(features)
    x = keras.layers.LSTM(5, return_sequences=False, name="lstm")(x)
    score = keras.layers.Dense(2, name="score")(x)
    return keras.Model(features, score, name="masked_features")


def _two_inputs() -> Any:
    """Both inputs masked, joined along their features; a go_backwards layer under the mask,
    a masked average and an Activation layer."""
    ids = keras.Input((None,), dtype="int32", name="ids")
    features = keras.Input((None, 2), name="features")
    words = keras.layers.Embedding(30, 4, mask_zero=True, name="embedding")(ids)
    extra = keras.layers.Masking(mask_value=0.0, name="masking")(features)
    x = keras.layers.Concatenate(name="concat")([words, extra])
    x = keras.layers.TimeDistributed(keras.layers.Dense(6, activation="relu"), name="td")(x)
    x = keras.layers.GRU(5, return_sequences=True, go_backwards=True, name="backward")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    x = keras.layers.Dense(3, name="logits")(x)
    out = keras.layers.Activation("softmax", name="probabilities")(x)
    return keras.Model([ids, features], out, name="two_inputs")


MODELS = {
    "tagger": _tagger,
    "classifier": _classifier,
    "masked_features": _masked_features,
    "two_inputs": _two_inputs,
}


def _build(name: str) -> Any:
    keras.utils.set_random_seed(zlib.crc32(name.encode()))
    return MODELS[name]()


def _run(model: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, inputs)))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_an_exported_model_on_onnxruntime_matches_keras(name: str) -> None:
    model = _build(name)
    graph = graph_from_keras(model)
    inputs = example_inputs(graph, batch=4, steps=9, seed=3)  # right- and left-padded rows
    exported = graph_to_onnx(graph, opset=newest_runtime_opset())
    onnx.checker.check_model(exported, full_check=True)
    assert [i.name for i in exported.graph.input] == list(graph.inputs)
    assert [o.name for o in exported.graph.output] == list(graph.outputs)
    (actual,) = _run(exported, inputs)
    expected = np.asarray(model(inputs if len(inputs) > 1 else inputs[0], training=False))
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=derived_tolerance(graph, inputs))


MASK = np.array(
    [
        [1, 1, 1, 1, 1, 1],  # full
        [1, 1, 1, 0, 0, 0],  # right padding
        [0, 0, 1, 1, 1, 1],  # left padding
        [1, 0, 1, 1, 0, 1],  # holes
        [0, 0, 0, 0, 0, 0],  # empty
    ],
    dtype=bool,
)

LAYERS = [
    pytest.param(cell, direction, zero, id=f"{cell}-{direction}-{'zero' if zero else 'carry'}")
    for cell, direction, zero in itertools.product(
        ("lstm", "gru", "simple_rnn"), ("forward", "backward", "bidirectional"), (False, True)
    )
    if not (direction == "bidirectional" and zero)
]


def _masked_layer_graph(cell: str, direction: str, zero: bool, sequences: bool) -> ModelGraph:
    rng = np.random.default_rng(zlib.crc32(f"{cell}-{direction}-{zero}".encode()))
    layer = random_layer(
        rng,
        cell,
        3,
        4,
        direction=direction,
        activation="tanh",
        recurrent_activation=None if cell == "simple_rnn" else "sigmoid",
        zero_masked_outputs=zero,
        merge_mode="concat",
        dtype=np.float32,
    )
    options = {"return_sequences": sequences, "time_major": False, "unroll": False}
    return ModelGraph(
        "masked",
        (
            LayerRecord("x", "input", "InputLayer", options={"shape": (None, 3), "dtype": "f"}),
            LayerRecord("masking", "masking", "Masking", ("x",), {"mask_value": 0.0}),
            LayerRecord("rnn", "recurrent", "RNN", ("masking",), options, recurrent=layer),
        ),
        inputs=("x",),
        outputs=("rnn",),
    )


@pytest.mark.parametrize("sequences", [True, False], ids=["sequences", "last"])
@pytest.mark.parametrize(("cell", "direction", "zero"), LAYERS)
def test_a_masked_layer_matches_the_reference_for_any_mask(cell, direction, zero, sequences):
    graph = _masked_layer_graph(cell, direction, zero, sequences)
    x = np.random.default_rng(1).standard_normal((5, 6, 3)).astype(np.float32)
    x[~MASK] = 0.0
    (expected,) = run_model_reference(graph, [x])
    (actual,) = _run(graph_to_onnx(graph, opset=newest_runtime_opset()), [x])
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=derived_tolerance(graph, [x]))


def test_compare_runs_a_whole_model_on_onnxruntime(tmp_path: Path) -> None:
    path = tmp_path / "tagger.keras"
    _build("tagger").save(path)
    report = compare(str(path), frameworks=["torch", "onnxruntime", "keras"])
    assert bool(report), report.failures
    labels = [pair.label for pair in report.pairs]
    assert "onnxruntime[cpu,float32] vs reference[cpu,float64]" in labels
    assert "onnxruntime[cpu,float32] vs keras[cpu,float32]@original" in labels
    assert "onnxruntime[cpu,float32] vs torch[cpu,float32]" in labels


def test_to_onnx_exports_a_whole_model_checked_against_keras(tmp_path: Path) -> None:
    model = _build("two_inputs")
    path = tmp_path / "two_inputs.keras"
    model.save(path)
    written = tmp_path / "two_inputs.onnx"
    from_file = to_onnx(str(path), written)  # verify=True: Keras as loaded vs onnxruntime
    from_live = to_onnx(model)
    assert onnx.load(str(written)).graph.output[0].name == "probabilities"
    graph = graph_from_keras(model)
    inputs = example_inputs(graph, batch=2, steps=5, seed=7)
    expected = np.asarray(model(inputs, training=False))
    for exported in (from_file, from_live):
        (actual,) = _run(exported, inputs)
        atol = derived_tolerance(graph, inputs)
        np.testing.assert_allclose(actual, expected, rtol=0, atol=atol)
    with pytest.raises(UnsupportedFeatureError, match=r"with_lengths=True: .*whole model"):
        to_onnx(model, with_lengths=True)


def test_what_is_not_exported_is_refused_by_name(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = keras.layers.Embedding(10, 3, mask_zero=True, name="embedding")(ids)
    x = keras.layers.LSTM(4, activation="selu", name="selu_lstm")(x)
    model = keras.Model(ids, keras.layers.Dense(2, name="dense")(x))
    message = r"layer 'selu_lstm' \(LSTM\): activation \['selu'\] has no ONNX recurrent"
    with pytest.raises(UnsupportedFeatureError, match=message):
        to_onnx(model)
    path = tmp_path / "selu.keras"
    model.save(path)
    with pytest.raises(UnsupportedFeatureError, match=r"\['onnxruntime'\] cannot run.*selu_lstm"):
        compare(str(path), frameworks=["torch", "onnxruntime"])
