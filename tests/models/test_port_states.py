"""Encoder–decoder models: final states out of recurrent layers, into others, ported every way.

Each model is a real Keras model (Keras 3, and tf_keras for Keras 2 files) with a masked
encoder input whose states start a decoder (``initial_state=[h, c]``); the model returns
the decoder's output and its final states. Expected values are the model's own call.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm import compare, keras_to_torch  # noqa: E402
from xframe_bilstm.adapters.keras.graph import graph_to_keras  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.models.live import graph_from_keras  # noqa: E402
from xframe_bilstm.onnx_converters import to_onnx  # noqa: E402
from xframe_bilstm.reference import run_model_reference  # noqa: E402

from .. import saved_models  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch, pytest.mark.onnx]


def _bidirectional(k: Any) -> Any:
    """A Bidirectional encoder whose merged h and c start an LSTM decoder."""
    layers = k.layers
    source, target = k.Input((None, 3), name="source"), k.Input((None, 2), name="target")
    masked = layers.Masking(0.0, name="masking")(source)
    _, fh, fc, bh, bc = layers.Bidirectional(layers.LSTM(4, return_state=True), name="encoder")(
        masked
    )
    h = layers.Concatenate(name="h")([fh, bh])
    c = layers.Concatenate(name="c")([fc, bc])
    decoder = layers.LSTM(8, return_sequences=True, return_state=True, name="decoder")
    y, dh, dc = decoder(target, initial_state=[h, c])
    y = layers.TimeDistributed(layers.Dense(5), name="logits")(y)
    return k.Model([source, target], [y, dh, dc])


def _plain(k: Any) -> Any:
    """A stack ending in a go_backwards GRU with its state, which starts a GRU decoder."""
    layers = k.layers
    source, target = k.Input((None, 3), name="source"), k.Input((None, 2), name="target")
    masked = layers.Masking(0.0, name="masking")(source)
    sequence = layers.LSTM(4, return_sequences=True, name="first")(masked)
    _, h = layers.GRU(3, return_state=True, go_backwards=True, name="encoder")(sequence)
    y = layers.GRU(3, name="decoder")(target, initial_state=[h])
    return k.Model([source, target], [layers.Dense(2, name="head")(y), h])


MODELS = {"bidirectional": _bidirectional, "plain": _plain}


def _inputs(seed: int) -> list[np.ndarray]:
    """Masked (all-zero) source steps in the middle, at the end, and a row with none valid."""
    rng = np.random.default_rng(seed)
    source = rng.standard_normal((4, 6, 3)).astype("float32")
    source[0, 2] = 0.0
    source[1, 4:] = 0.0
    source[2] = 0.0
    target = rng.standard_normal((4, 5, 2)).astype("float32")
    return [source, target]


def _outputs(model: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(y) for y in model(inputs)]


def _torch_run(module: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        return [y.numpy() for y in module(*map(torch.from_numpy, inputs))]


def _close(actual: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=0, atol=2e-5)


@pytest.fixture(scope="module", params=sorted(MODELS))
def saved(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list, dict]:
    keras.utils.set_random_seed(1)
    model = MODELS[request.param](keras)
    saved_models.randomize(model, 2)
    folder = tmp_path_factory.mktemp(request.param)
    paths = {suffix: folder / f"{request.param}{suffix}" for suffix in (".keras", ".h5")}
    for path in paths.values():
        model.save(path)
    return model, _inputs(3), paths


def test_the_graph_names_each_state_by_its_output_index(saved) -> None:
    model, _, _ = saved
    graph = graph_from_keras(model)
    decoder = graph.layer("decoder")
    assert decoder.inputs[0] == "target" and len(decoder.inputs) > 1
    if model.layers[-1].name == "logits":
        assert graph.outputs == ("logits", "decoder:1", "decoder:2")
        assert graph.layer("h").inputs == ("encoder:1", "encoder:3")
        assert graph.layer("c").inputs == ("encoder:2", "encoder:4")
    else:
        assert graph.outputs == ("head", "encoder:1")
    assert not any(graph.masked(name) for name in graph.layer("encoder").outputs[1:])


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_the_file_ports_to_torch_and_returns_what_the_model_returns(saved, suffix: str) -> None:
    model, inputs, paths = saved
    port = keras_to_torch(paths[suffix])
    assert port.verified_against is not None
    assert port.input_names == ("source", "target")
    _close(_torch_run(port, inputs), _outputs(model, inputs))


def test_the_reference_matches_the_model(saved) -> None:
    model, inputs, _ = saved
    _close(list(run_model_reference(graph_from_keras(model), inputs)), _outputs(model, inputs))


def test_the_keras_rebuild_matches_the_model(saved) -> None:
    model, inputs, _ = saved
    _close(_outputs(graph_to_keras(graph_from_keras(model)), inputs), _outputs(model, inputs))


def test_the_onnx_export_matches_the_model(saved) -> None:
    model, inputs, paths = saved
    exported = to_onnx(str(paths[".keras"]))
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["source", "target"]
    assert len(session.get_outputs()) == len(model.outputs)
    _close(session.run(None, dict(zip(("source", "target"), inputs))), _outputs(model, inputs))


def test_compare_runs_every_column_and_pairs_every_output(saved) -> None:
    model, _, paths = saved
    report = compare(str(paths[".keras"]))
    assert bool(report), report
    frameworks = {run.spec.framework for run in report.runs}
    assert {"reference", "torch", "keras", "onnxruntime"} <= frameworks
    assert all(run.error is None for run in report.runs)
    assert all(len(pair.comparison.arrays) == len(model.outputs) for pair in report.pairs)


def test_states_in_the_port_follow_the_initial_states(saved) -> None:
    """A decoder ignoring its initial states would give the same output for other ones."""
    model, inputs, paths = saved
    port = keras_to_torch(paths[".keras"])
    other = [inputs[0] * 2.0, inputs[1]]
    first, second = _torch_run(port, inputs), _torch_run(port, other)
    assert not np.allclose(first[0], second[0])
    _close(second, _outputs(model, other))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_keras2_files_port_too(tmp_path: Path, name: str) -> None:
    tf_keras = pytest.importorskip("tf_keras")
    tf_keras.utils.set_random_seed(4)
    model = MODELS[name](tf_keras)
    saved_models.randomize(model, 4)
    path = tmp_path / f"k2_{name}.h5"
    model.save(path)
    port = keras_to_torch(path)
    assert "tf_keras" in port.verified_against
    inputs = _inputs(5)
    _close(_torch_run(port, inputs), _outputs(model, inputs))
    report = compare(str(path), frameworks=["reference", "torch", "onnxruntime"])
    assert bool(report), report


def test_a_sequential_returns_every_tensor_of_its_last_layer(tmp_path: Path) -> None:
    model = keras.Sequential(
        [
            keras.Input((None, 3)),
            keras.layers.GRU(4, return_sequences=True),
            keras.layers.Bidirectional(keras.layers.LSTM(2, return_state=True)),
        ]
    )
    path = tmp_path / "states.keras"
    model.save(path)
    x = np.random.default_rng(3).standard_normal((2, 5, 3)).astype("float32")
    expected = [np.asarray(y) for y in model(x)]
    port = keras_to_torch(path)
    with torch.no_grad():
        actual = [y.numpy() for y in port(torch.from_numpy(x))]
    assert len(actual) == len(expected) == 5  # output, then h and c of each direction
    for got, want in zip(actual, expected):
        np.testing.assert_allclose(got, want, atol=2e-6)


def test_states_inside_a_sequential_are_refused_by_name(tmp_path: Path) -> None:
    model = keras.Sequential(
        [
            keras.Input((None, 3)),
            keras.layers.LSTM(4, return_sequences=True, name="lstm"),
            keras.layers.Dense(2),
        ]
    )
    model.save(tmp_path / "valid.keras")
    path = tmp_path / "states.keras"
    with zipfile.ZipFile(tmp_path / "valid.keras") as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                config["config"]["layers"][1]["config"]["return_state"] = True
                data = json.dumps(config).encode()
            target.writestr(item, data)
    with pytest.raises(UnsupportedFeatureError, match=r"layer 'lstm' \(LSTM\) returns its states"):
        keras_to_torch(path)
