"""Whole Keras models rebuilt in Keras 3 from their reading (graph_to_keras), against the
model's own call, the float64 reference and the outputs of Keras 2 (tf_keras) itself; and
the ``keras`` column of compare() for whole models."""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import compare  # noqa: E402
from xframe_bilstm.adapters.keras import graph_refusal, graph_to_keras  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.frameworks import FRAMEWORKS  # noqa: E402
from xframe_bilstm.frameworks.base import RunSpec  # noqa: E402
from xframe_bilstm.graph import ModelGraph  # noqa: E402
from xframe_bilstm.inputs import example_inputs  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402
from xframe_bilstm.reference import run_model_reference  # noqa: E402

from ... import saved_models  # noqa: E402

pytestmark = pytest.mark.keras


def _tagger() -> Any:
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = keras.layers.Embedding(30, 6, mask_zero=True, name="embedding")(ids)
    x = keras.layers.Bidirectional(keras.layers.LSTM(5, return_sequences=True), name="bilstm")(x)
    tags = keras.layers.TimeDistributed(keras.layers.Dense(4, activation="softmax"), name="tags")
    return keras.Model(ids, tags(x), name="tagger")


def _classifier() -> Any:
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = keras.layers.Embedding(30, 6, name="embedding")(ids)
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
    """Both inputs masked and joined; a plain Dense on sequences, a go_backwards layer under
    the mask, a masked average, a Reshape and a Flatten."""
    ids = keras.Input((None,), dtype="int32", name="ids")
    features = keras.Input((None, 2), name="features")
    words = keras.layers.Embedding(30, 4, mask_zero=True, name="embedding")(ids)
    extra = keras.layers.Masking(mask_value=0.0, name="masking")(features)
    x = keras.layers.Concatenate(name="concat")([words, extra])
    x = keras.layers.Dense(6, activation="relu", name="dense")(x)
    x = keras.layers.GRU(5, return_sequences=True, go_backwards=True, name="backward")(x)
    x = keras.layers.GlobalAveragePooling1D(keepdims=True, name="pool")(x)
    x = keras.layers.Reshape((5, 1), name="reshape")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(3, name="logits")(x)
    out = keras.layers.Activation("softmax", name="probabilities")(x)
    return keras.Model([ids, features], out, name="two_inputs")


MODELS = {
    "tagger": _tagger,
    "classifier": _classifier,
    "masked_features": _masked_features,
    "two_inputs": _two_inputs,
}


def _saved(name: str, directory: Path) -> tuple[Any, Path]:
    keras.utils.set_random_seed(zlib.crc32(name.encode()))
    model = MODELS[name]()
    saved_models.randomize(model, zlib.crc32(name.encode()))  # weights that matter
    path = directory / f"{name}.keras"
    model.save(path)
    return model, path


def _call(model: Any, inputs: list[np.ndarray]) -> np.ndarray:
    return np.asarray(model(inputs if len(inputs) > 1 else inputs[0], training=False))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_rebuilt_model_computes_what_the_model_computes(name: str, tmp_path: Path) -> None:
    model, path = _saved(name, tmp_path)
    graph = read_model(path)
    inputs = example_inputs(graph, batch=4, steps=9, seed=3)  # right- and left-padded rows
    rebuilt = graph_to_keras(graph)
    assert [layer.name for layer in rebuilt.layers if layer.weights] == [
        layer.name for layer in model.layers if layer.weights
    ]
    expected = _call(model, inputs)
    actual = _call(rebuilt, inputs)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=derived_tolerance(graph, inputs))


def test_a_float64_rebuild_computes_the_float64_reference(tmp_path: Path) -> None:
    _, path = _saved("two_inputs", tmp_path)
    graph = read_model(path)
    inputs = example_inputs(graph, batch=4, steps=9, seed=5)
    (expected,) = run_model_reference(graph, inputs)
    actual = graph_to_keras(graph, dtype="float64")(inputs, training=False)
    assert actual.dtype == "float64"
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["tagger", "two_inputs"])
def test_compare_runs_a_whole_model_rebuilt_in_keras(name: str, tmp_path: Path) -> None:
    _, path = _saved(name, tmp_path)
    report = compare(str(path), frameworks=["torch", "keras"])
    assert bool(report), report.failures
    runs = {run.label: run for run in report.runs}
    assert {"keras[cpu,float32]", "keras[cpu,float32]@original"} <= set(runs)
    assert "rebuilt from the reading" in str(runs["keras[cpu,float32]"].settings["model"])
    labels = [pair.label for pair in report.pairs]
    assert "keras[cpu,float32] vs keras[cpu,float32]@original" in labels
    assert "keras[cpu,float32] vs reference[cpu,float64]" in labels


def test_the_framework_builds_a_graph_once_and_runs_it_in_float64(tmp_path: Path) -> None:
    model, path = _saved("masked_features", tmp_path)
    graph = read_model(path)
    framework = FRAMEWORKS["keras"]()
    assert framework.supports(graph) is None
    inputs = example_inputs(graph, seed=2)
    spec = RunSpec("keras", "cpu", "float32")
    runs = [framework.run(graph, inputs[0], spec, initial_states=None, lengths=None)]
    runs.append(framework.run(graph, inputs[0], spec, initial_states=None, lengths=None))
    (first,), settings = runs[0]
    assert first.dtype == np.float64 and settings["kernel"]
    np.testing.assert_array_equal(first, runs[1][0][0])
    np.testing.assert_array_equal(first, _call(model, inputs))  # float32 all through


def test_unrolling_a_masked_bidirectional_layer_is_refused_by_name(tmp_path: Path) -> None:
    _, path = _saved("tagger", tmp_path)
    graph = read_model(path)
    with pytest.raises(UnsupportedFeatureError, match=r"layer 'bilstm' \(Bidirectional\): unroll"):
        graph_to_keras(graph, unroll=True)


def _keras2_case(name: str, tmp_path: Path) -> tuple[ModelGraph, list[np.ndarray], np.ndarray]:
    """A tf_keras model saved as .h5: its reading, inputs and tf_keras's own outputs."""
    k2 = pytest.importorskip("tf_keras")
    try:
        model, inputs = saved_models.TF_KERAS[name](k2)
        path = tmp_path / f"{name}.h5"
        model.save(path)
        (expected,) = saved_models.outputs_of(model, inputs)
    finally:
        # Layer names count up per process: other tests' tf_keras models keep theirs.
        k2.backend.clear_session()
    return read_model(path), inputs, expected


def test_a_keras2_model_keeps_its_keras2_meanings(tmp_path: Path) -> None:
    # hard_sigmoid gates are Keras 2's 0.2·x + 0.5, not Keras 3's x/6 + 0.5
    graph, inputs, expected = _keras2_case("k2-classifier", tmp_path)
    assert graph.keras_major == 2
    actual = _call(graph_to_keras(graph), inputs)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=derived_tolerance(graph, inputs))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("k2-concatenated-masks", r"\(Concatenate\): Keras 2 keeps a step where every input"),
        ("k2-time-major", r"'lstm\w*' \(LSTM\): time_major=True.*\(SimpleRNN\): time_major"),
    ],
)
def test_what_keras3_cannot_compute_is_refused_by_name(name, message, tmp_path) -> None:
    graph, _, _ = _keras2_case(name, tmp_path)
    assert FRAMEWORKS["keras"]().supports(graph) == graph_refusal(graph)
    with pytest.raises(UnsupportedFeatureError, match=message):
        graph_to_keras(graph)
    # An unmasked Keras 2 concatenation computes the same in Keras 3.
    if name == "k2-concatenated-masks":
        unmasked = dataclasses.replace(
            graph,
            layers=tuple(
                dataclasses.replace(r, options={**r.options, "mask_zero": False})
                if r.kind == "embedding"
                else r
                for r in graph.layers
            ),
        )
        assert graph_refusal(unmasked) is None
