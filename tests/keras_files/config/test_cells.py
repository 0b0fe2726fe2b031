"""``RNN(cell)`` and ``RNN(StackedRNNCells([...]))`` in real Keras 3 and tf_keras models, saved
as ``.keras`` and ``.h5``, against the frameworks' own calls: ported to torch, compared on
every framework, exported to ONNX and rebuilt in Keras (as plain LSTM/GRU/SimpleRNN layers,
the same math); and what is refused, by name."""

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

from xframe_bilstm import (  # noqa: E402
    UnsupportedFeatureError,
    compare,
    keras_to_torch,
    lint,
)
from xframe_bilstm.adapters.keras import graph_to_keras  # noqa: E402
from xframe_bilstm.adapters.torch import run_module as run_port  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402
from xframe_bilstm.models.live import graph_from_keras  # noqa: E402
from xframe_bilstm.onnx_converters import to_onnx  # noqa: E402

from ...saved_models import VOCABULARY, randomize, token_batch  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def cells_tagger(k: Any) -> Any:
    """Every cell form under an Embedding mask; per-step outputs, so masked steps count."""
    layers = k.layers
    ids = k.Input((None,), dtype="int32")
    x = layers.Embedding(VOCABULARY, 5, mask_zero=True)(ids)
    x = layers.RNN(layers.LSTMCell(4), return_sequences=True, name="lstm")(x)
    x = layers.Bidirectional(layers.RNN(layers.GRUCell(3), return_sequences=True), name="bi")(x)
    cells = layers.StackedRNNCells([layers.LSTMCell(4), layers.LSTMCell(3)])
    x = layers.RNN(cells, return_sequences=True, name="stack")(x)
    x = layers.RNN(layers.SimpleRNNCell(3), return_sequences=True, go_backwards=True, name="back")(
        x
    )
    model = k.Model(ids, layers.TimeDistributed(layers.Dense(2))(x))
    randomize(model, 31)
    return model


def cells_options() -> Any:
    """No mask: go_backwards stacks, a list of cells, unroll, GRU reset_after=False."""
    layers = keras.layers
    features = keras.Input((None, 3))
    x = layers.RNN(
        [layers.GRUCell(4, reset_after=False), layers.SimpleRNNCell(3)],
        return_sequences=True,
        go_backwards=True,
    )(features)
    x = layers.RNN(layers.LSTMCell(3), return_sequences=True, unroll=True, go_backwards=True)(x)
    x = layers.RNN(layers.StackedRNNCells([layers.GRUCell(3), layers.LSTMCell(2)]))(x)
    model = keras.Model(features, x)
    randomize(model, 32)
    return model


def _tokens() -> np.ndarray:
    return token_batch(np.random.default_rng(41))  # right padding, left padding, a hole


def _floats() -> np.ndarray:
    return np.random.default_rng(42).standard_normal((3, 6, 3)).astype("float32")


def _close(actual: np.ndarray, expected: np.ndarray, path: Path | Any, x: np.ndarray) -> None:
    graph = read_model(path) if isinstance(path, Path) else graph_from_keras(path)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=derived_tolerance(graph, [x]))


@pytest.fixture(scope="module")
def k3_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Path]]:
    folder = tmp_path_factory.mktemp("cells")
    saved = {}
    for name, model in (("tagger", cells_tagger(keras)), ("options", cells_options())):
        for suffix in (".keras", ".h5"):
            path = folder / f"{name}{suffix}"
            model.save(path)
            saved[f"{name}{suffix}"] = (model, path)
    return saved


@pytest.mark.parametrize("name", ["tagger.keras", "tagger.h5", "options.keras", "options.h5"])
def test_keras3_file_ports_to_torch_and_matches_keras(k3_files, name: str) -> None:
    model, path = k3_files[name]
    x = _tokens() if name.startswith("tagger") else _floats()
    module = keras_to_torch(path)
    assert "keras.saving.load_model" in module.verified_against
    (actual,) = run_port(module, [x])
    _close(actual, np.asarray(model(x, training=False)), path, x)


def test_rnn_of_a_cell_reads_as_the_plain_layer_with_the_same_weights() -> None:
    layers = keras.layers
    plain = keras.Sequential(
        [keras.Input((None, 3)), layers.GRU(4, go_backwards=True, return_sequences=True)]
    )
    randomize(plain, 33)
    of_cell = keras.Sequential(
        [
            keras.Input((None, 3)),
            layers.RNN(layers.GRUCell(4), go_backwards=True, return_sequences=True),
        ]
    )
    of_cell.set_weights(plain.get_weights())
    expected, actual = (graph_from_keras(model).layers[-1] for model in (plain, of_cell))
    assert actual.recurrent == expected.recurrent
    assert actual.options == expected.options


def test_stacked_cells_read_as_a_chain_of_layers(k3_files) -> None:
    graph = read_model(k3_files["tagger.keras"][1])
    stacked = [record for record in graph.layers if record.name.startswith("stack")]
    assert [(r.name, r.recurrent.units, r.options["return_sequences"]) for r in stacked] == [
        ("stack_cell_0", 4, True),
        ("stack", 3, True),
    ]
    assert stacked[0].inputs == ("bi",)
    assert stacked[1].inputs == ("stack_cell_0",)
    assert graph.layer("back").inputs == ("stack",)


@pytest.mark.parametrize("name", ["tagger.keras", "options.h5"])
def test_compare_runs_the_file_on_every_framework(k3_files, name: str) -> None:
    _, path = k3_files[name]
    report = compare(str(path), frameworks=["torch", "keras", "onnxruntime"])
    assert bool(report), report.failures
    labels = {run.label for run in report.runs}
    assert {
        "reference[cpu,float64]",
        "torch[cpu,float32]",
        "keras[cpu,float32]",
        "onnxruntime[cpu,float32]",
    } <= labels


@pytest.mark.parametrize("name", ["tagger.h5", "options.keras"])
def test_to_onnx_of_the_file_matches_keras(k3_files, name: str) -> None:
    model, path = k3_files[name]
    x = _tokens() if name.startswith("tagger") else _floats()
    exported = to_onnx(str(path))  # verified against Keras as loaded
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    (spec,) = session.get_inputs()
    ids = x.astype(np.int64) if spec.type == "tensor(int64)" else x  # ONNX's Gather indices
    (actual,) = session.run(None, {spec.name: ids})
    _close(actual, np.asarray(model(x, training=False)), path, x)


@pytest.mark.parametrize("name", ["tagger.keras", "options.h5"])
def test_the_keras_rebuild_matches_the_original(k3_files, name: str) -> None:
    model, path = k3_files[name]
    rebuilt = graph_to_keras(read_model(path))  # plain LSTM/GRU/SimpleRNN layers
    x = _tokens() if name.startswith("tagger") else _floats()
    actual = np.asarray(rebuilt(x, training=False))
    _close(actual, np.asarray(model(x, training=False)), path, x)


def test_a_live_stack_of_rnn_layers_ports_through_its_configuration() -> None:
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((None, 3)),
            layers.RNN(layers.LSTMCell(4), return_sequences=True),
            layers.Bidirectional(layers.RNN(layers.GRUCell(2))),
        ]
    )
    randomize(model, 34)
    module = keras_to_torch(model)
    assert module.verified_against == "the Keras model's own call"
    x = _floats()
    (actual,) = run_port(module, [x])
    _close(actual, np.asarray(model(x)), model, x)


# --------------------------------------------------------------------------- tf_keras


def k2_cells() -> Any:
    """Keras 2 defaults inside cells: hard_sigmoid is 0.2x + 0.5, GRU reset_after=False, and
    a Bidirectional config that holds only its forward RNN."""
    k2 = pytest.importorskip("tf_keras")
    layers = k2.layers
    ids = k2.Input((None,), dtype="int32")
    x = layers.Embedding(VOCABULARY, 5, mask_zero=True)(ids)
    lstm = layers.LSTMCell(4, recurrent_activation="hard_sigmoid")
    x = layers.RNN(lstm, return_sequences=True, name="lstm")(x)
    gru = layers.RNN(layers.GRUCell(3, reset_after=False), return_sequences=True)
    x = layers.Bidirectional(gru, name="bi")(x)
    cells = layers.StackedRNNCells([layers.LSTMCell(4), layers.GRUCell(3)])
    x = layers.RNN(cells, name="stack")(x)
    model = k2.Model(ids, layers.Dense(2)(x))
    randomize(model, 35, scale=1.5)
    return model


@pytest.fixture(scope="module")
def k2_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Path]]:
    model = k2_cells()
    folder = tmp_path_factory.mktemp("k2_cells")
    paths = {suffix: folder / f"cells{suffix}" for suffix in (".keras", ".h5")}
    for path in paths.values():
        model.save(path)
    return model, paths


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_tf_keras_file_ports_with_keras2_meanings(k2_files, suffix: str) -> None:
    model, paths = k2_files
    path = paths[suffix]
    graph = read_model(path)
    assert graph.keras_major == 2
    first = graph.layer("lstm").recurrent
    assert (first.cell, first.recurrent_activation) == ("lstm", "hard_sigmoid_keras2")
    assert graph.layer("bi").recurrent.reset_after is False
    config = json.loads(zipfile.ZipFile(paths[".keras"]).read("config.json"))
    (bi,) = [layer for layer in config["config"]["layers"] if layer["name"] == "bi"]
    assert "backward_layer" not in bi["config"]  # Keras 2's form: the forward RNN only
    module = keras_to_torch(path)
    assert "tf_keras.models.load_model" in module.verified_against
    x = _tokens()
    (actual,) = run_port(module, [x])
    _close(actual, np.asarray(model(x, training=False)), path, x)


def test_compare_runs_a_tf_keras_file(k2_files) -> None:
    _, paths = k2_files
    report = compare(str(paths[".h5"]), frameworks=["torch", "onnxruntime"])
    assert bool(report), report.failures


def test_lint_lists_the_traps_inside_cells(k2_files) -> None:
    _, paths = k2_files
    traps = {(trap.layer, trap.trap): trap.action for trap in lint(paths[".h5"])}
    assert traps[("lstm", "hard_sigmoid")] == "converted"
    assert traps[("bi", "GRU reset_after=False")] == "explicit loop"
    assert traps[("stack", "StackedRNNCells")] == "converted"


# --------------------------------------------------------------------------- refusals


def _masked(rnn: Any) -> Any:
    ids = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(VOCABULARY, 3, mask_zero=True)(ids)
    return keras.Model(ids, rnn(x))


def test_a_go_backwards_stack_under_a_mask_is_refused(tmp_path: Path) -> None:
    layers = keras.layers
    rnn = layers.RNN([layers.LSTMCell(3), layers.LSTMCell(2)], go_backwards=True, name="back")
    model = _masked(rnn)
    path = tmp_path / "back.keras"
    model.save(path)
    with pytest.raises(UnsupportedFeatureError, match="go_backwards=True over StackedRNNCells"):
        keras_to_torch(path)
    traps = {trap.trap: trap.action for trap in lint(model)}
    assert traps["StackedRNNCells with go_backwards and a mask"] == "refused"


def test_options_the_plain_layers_refuse_are_refused() -> None:
    features = keras.Input(batch_shape=(2, 4, 3))
    out = keras.layers.RNN(keras.layers.LSTMCell(2), stateful=True)(features)
    with pytest.raises(UnsupportedFeatureError, match="stateful=True"):
        graph_from_keras(keras.Model(features, out))


def test_an_rnn_of_one_cell_returns_its_states_as_the_plain_layer() -> None:
    features = keras.Input((4, 3))
    out, h, c = keras.layers.RNN(keras.layers.LSTMCell(2), return_state=True, name="rnn")(features)
    graph = graph_from_keras(keras.Model(features, [out, h, c]))
    assert graph.outputs == ("rnn", "rnn:1", "rnn:2")


def test_stacked_cells_returning_states_are_refused() -> None:
    features = keras.Input((4, 3))
    cells = [keras.layers.GRUCell(2), keras.layers.GRUCell(2)]
    out, *states = keras.layers.RNN(cells, return_state=True, name="rnn")(features)
    with pytest.raises(UnsupportedFeatureError, match=r"'rnn'.*return_state=True"):
        graph_from_keras(keras.Model(features, [out, *states]))


def test_a_stack_inside_bidirectional_is_refused() -> None:
    k2 = pytest.importorskip("tf_keras")
    layers = k2.layers
    model = k2.Sequential(
        [
            layers.InputLayer((None, 3)),
            layers.Bidirectional(layers.RNN([layers.GRUCell(2), layers.GRUCell(2)]), name="bi"),
        ]
    )
    with pytest.raises(UnsupportedFeatureError, match=r"'bi'.*StackedRNNCells \(2 cells\)"):
        keras_to_torch(model)
    assert {trap.trap: trap.action for trap in lint(model)} == {
        "StackedRNNCells in Bidirectional": "refused"
    }


def test_an_unsupported_cell_is_refused_by_name(k3_files, tmp_path: Path) -> None:
    _, path = k3_files["options.keras"]
    forged = tmp_path / "peephole.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(forged, "w") as copy:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                config["config"]["layers"][2]["config"]["cell"]["class_name"] = "PeepholeLSTMCell"
                data = json.dumps(config).encode()
            copy.writestr(info, data)
    with pytest.raises(UnsupportedFeatureError, match="runs a PeepholeLSTMCell cell"):
        read_model(forged)
    traps = {trap.trap: trap for trap in lint(forged)}
    assert traps["unsupported cell"].action == "refused"
    assert "PeepholeLSTMCell" in traps["unsupported cell"].detail
