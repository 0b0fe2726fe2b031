"""Files written by tf_keras (Keras 2): its own `.keras` format, and TensorFlow op layers.

tf_keras names classes its public API does not export by their defining module
(``tf_keras.src.engine.functional.Functional``); those are read as Keras 2 by name, and
nothing else outside Keras is accepted. ``TFOpLambda`` layers are named with their op.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("keras")
k2 = pytest.importorskip("tf_keras")
tf = pytest.importorskip("tensorflow")

from xframe_bilstm import UnsupportedFeatureError, compare, keras_to_torch, lint  # noqa: E402
from xframe_bilstm.adapters.torch import run_module as run_port  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance as model_tolerance  # noqa: E402
from xframe_bilstm.keras_files import read_model, read_spec  # noqa: E402

from ..saved_models import randomize  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def functional_model():
    layers = k2.layers
    inputs = k2.Input((None, 3))
    x = layers.Bidirectional(layers.LSTM(4, return_sequences=True))(inputs)
    x = layers.GRU(5)(x)
    model = k2.Model(inputs, layers.Dense(2)(x))
    randomize(model, 21)
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("tf_keras")
    model = functional_model()
    paths = {suffix: folder / f"functional{suffix}" for suffix in (".keras", ".h5")}
    for path in paths.values():
        model.save(path)
    return model, paths


def rewrite_config(path: Path, target: Path, change) -> Path:
    """A copy of a .keras archive whose config.json went through ``change``."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(target, "w") as copy:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                change(config)
                data = json.dumps(config).encode()
            copy.writestr(info, data)
    return target


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_functional_model_in_either_format_ports_and_matches_tf_keras(saved, suffix) -> None:
    model, paths = saved
    path = paths[suffix]
    config = json.loads(zipfile.ZipFile(paths[".keras"]).read("config.json"))
    assert config["module"] == "tf_keras.src.engine.functional"  # what made it fail
    module = keras_to_torch(path)
    assert "tf_keras.models.load_model" in module.verified_against
    x = np.random.default_rng(5).standard_normal((3, 6, 3)).astype("float32")
    (actual,) = run_port(module, [x])
    expected = np.asarray(model(x, training=False))
    assert np.abs(actual - expected).max() <= model_tolerance(read_model(path), [x])


def test_compare_of_a_keras2_file_says_its_original_is_not_run(saved) -> None:
    _, paths = saved
    report = compare(paths[".h5"], frameworks=["torch"], steps=5)
    assert not any("@original" in label for pair in report.pairs for label in pair.label.split())
    (entry,) = [entry for entry in report.left_out if entry.startswith("the source's own run")]
    assert "a Keras 2 file" in entry and "keras_to_torch(path)" in entry
    assert any(line.startswith("LEFT OUT | the source's own run") for line in report.lines())


def test_both_formats_read_as_the_same_keras2_model(saved) -> None:
    _, paths = saved
    keras_file, h5_file = (read_model(paths[s]) for s in (".keras", ".h5"))
    assert keras_file.keras_major == h5_file.keras_major == 2
    for a, b in zip(keras_file.layers, h5_file.layers, strict=True):
        assert (a.name, a.kind, a.recurrent) == (b.name, b.kind, b.recurrent)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        # A custom module under tf_keras's name is still foreign code.
        (lambda c: c.update(module="tf_keras.src.engine.my_models"), "tf_keras.src.engine.my"),
        # tf_keras's own module with another class is not one of tf_keras's own classes.
        (
            lambda c: c["config"]["layers"][1].update(
                module="tf_keras.src.engine.functional", class_name="Bidirectional"
            ),
            "'Bidirectional' names module 'tf_keras.src.engine.functional'",
        ),
        # A registered custom name is refused whatever the module.
        (lambda c: c.update(registered_name="Custom>Functional"), "Custom>Functional"),
    ],
    ids=["custom-module", "foreign-class", "custom-registered-name"],
)
def test_only_tf_keras_own_classes_are_accepted(saved, tmp_path: Path, change, named) -> None:
    _, paths = saved
    forged = rewrite_config(paths[".keras"], tmp_path / "forged.keras", change)
    for attempt in (read_spec, keras_to_torch):
        with pytest.raises(UnsupportedFeatureError, match="refused") as error:
            attempt(forged)
        assert named in str(error.value)


def test_tf_keras_module_names_are_refused_in_a_keras3_file(saved, tmp_path: Path) -> None:
    _, paths = saved
    forged = tmp_path / "claims_keras3.keras"
    with zipfile.ZipFile(paths[".keras"]) as source, zipfile.ZipFile(forged, "w") as copy:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "metadata.json":
                data = json.dumps({"keras_version": "3.15.0"}).encode()
            copy.writestr(info, data)
    with pytest.raises(UnsupportedFeatureError, match="refused: 'Functional' names module"):
        read_spec(forged)


@pytest.fixture(scope="module")
def tf_op_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], list[str]]:
    """One tf_keras model with TFOpLambda layers (a reduce_sum, a product), in both formats."""
    inputs = k2.Input((None, 3))
    sequence = k2.layers.LSTM(4, return_sequences=True)(inputs)
    total = tf.math.reduce_sum(sequence, axis=1)
    model = k2.Model(inputs, total * 2.0)
    assert [type(layer).__name__ for layer in model.layers][-2:] == ["TFOpLambda"] * 2
    # Names are made unique per process: tf.math.reduce_sum, or tf.math.reduce_sum_1...
    names = [layer.name for layer in model.layers[-2:]]
    folder = tmp_path_factory.mktemp("ops")
    paths = {suffix: folder / f"ops{suffix}" for suffix in (".h5", ".keras")}
    for path in paths.values():
        model.save(path)
    return paths, names


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_tf_op_layers_are_named_with_their_operation(tf_op_files, suffix: str) -> None:
    paths, (total, product) = tf_op_files
    path = paths[suffix]
    for attempt in (read_model, keras_to_torch):
        with pytest.raises(UnsupportedFeatureError) as error:
            attempt(path)
        message = str(error.value)
        assert "damaged" not in message
        assert f"'{total}' (TFOpLambda) applying TensorFlow's tf.math.reduce_sum" in message
        assert f"'{product}' (TFOpLambda) applying TensorFlow's tf.math.multiply" in message
        assert "keras_to_torch(model.get_layer(name))" in message
    listed = {trap.layer for trap in lint(path) if trap.action == "refused"}
    assert {total, product} <= listed


def test_a_nested_model_is_read_inline_past_the_node_of_its_own_build(tmp_path: Path) -> None:
    inputs = k2.Input((None, 3))
    inner = k2.Sequential([k2.layers.LSTM(4, name="lstm")], name="inner")
    model = k2.Model(inputs, inner(inputs))
    randomize(model, 8)
    path = tmp_path / "nested.h5"
    model.save(path)
    # tf_keras writes the call as node 1: the nested model's own build is its node 0.
    assert [r.name for r in read_model(path).layers][1:] == ["inner.lstm"]
    module = keras_to_torch(path)
    x = np.random.default_rng(9).standard_normal((2, 5, 3)).astype("float32")
    (actual,) = run_port(module, [x])
    expected = np.asarray(model(x, training=False))
    assert np.abs(actual - expected).max() <= model_tolerance(read_model(path), [x])
