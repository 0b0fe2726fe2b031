"""Held tensors given the batch axis rebuilt in Keras (``xframe_bilstm>BatchBroadcast``), saved
and read back: the same records, computing the same as the graph they were built from; token
ids serve as their input as well as floats."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.adapters.keras import graph_to_keras, register_keras_activations  # noqa: E402
from xframe_bilstm.graph import LayerRecord, ModelGraph  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402
from xframe_bilstm.models.live import graph_from_keras  # noqa: E402
from xframe_bilstm.reference.graph import run_model_reference  # noqa: E402

from ...reference.test_broadcast import CLS, X, broadcast_graph  # noqa: E402
from .edited import edited  # noqa: E402

pytestmark = pytest.mark.keras

BROADCASTS = {"h0": (4,), "c0": (4,), "cls": (1, 2)}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("broadcast") / "broadcast.keras"
    graph_to_keras(broadcast_graph()).save(path)
    return path


def _layers(graph: ModelGraph) -> set[tuple[str, str, tuple[str, ...]]]:
    """Each layer's name, kind and inputs (Keras orders the layers a functional model reads
    by its own rule)."""
    return {(record.name, record.kind, record.inputs) for record in graph.layers}


def _check_read(read: ModelGraph) -> None:
    original = broadcast_graph()
    assert _layers(read) == _layers(original)
    assert read.inputs == original.inputs and read.outputs == original.outputs
    for name, shape in BROADCASTS.items():
        record = read.layer(name)
        assert record.class_name == "xframe_bilstm>BatchBroadcast"
        assert record.options == {"shape": shape}
        np.testing.assert_allclose(record.weights["value"], original.layer(name).weights["value"])
    for got, expected in zip(run_model_reference(read, [X]), run_model_reference(original, [X])):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)  # float32 weights


def test_a_saved_file_reads_back_as_the_graph(saved: Path) -> None:
    _check_read(read_model(saved))


def test_an_h5_file_reads_back_as_the_graph(tmp_path: Path) -> None:
    graph_to_keras(broadcast_graph()).save(tmp_path / "broadcast.h5")
    _check_read(read_model(tmp_path / "broadcast.h5"))


def test_a_live_model_reads_back_as_the_graph() -> None:
    _check_read(graph_from_keras(graph_to_keras(broadcast_graph())))


def test_keras_loads_the_saved_file(saved: Path) -> None:
    register_keras_activations()
    model = keras.saving.load_model(saved)
    held = model.get_layer("cls")
    assert [variable.trainable for variable in held.weights] == [True]
    expected = run_model_reference(broadcast_graph(), [X], dtype=np.float32)
    for value, reference in zip(model(X.astype("float32")), expected):
        np.testing.assert_allclose(np.asarray(value), reference, rtol=0, atol=1e-5)


def _token_graph() -> ModelGraph:
    """A class token repeated over a batch of token ids, read by nothing but the output."""
    options = {"shape": CLS.shape}
    return ModelGraph(
        "tokens",
        (
            LayerRecord("ids", "input", "InputLayer", options={"shape": (None,), "dtype": "int32"}),
            LayerRecord("cls", "broadcast", "BatchBroadcast", ("ids",), options, {"value": CLS}),
        ),
        ("ids",),
        ("cls",),
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_token_ids_give_the_batch_of_a_float_output(dtype: str, tmp_path: Path) -> None:
    ids = np.array([[3, 1, 0], [2, 2, 2]], dtype="int32")
    model = graph_to_keras(_token_graph(), dtype=dtype)
    for got in (model(ids), model.predict(ids, verbose=0)):
        assert np.asarray(got).dtype == dtype
        np.testing.assert_array_equal(
            np.asarray(got), np.broadcast_to(CLS, (2, 1, 2)).astype(dtype)
        )
    model.save(tmp_path / "tokens.keras")
    read = read_model(tmp_path / "tokens.keras")
    assert read.layer("ids").options["dtype"] == "int32" and read.layer("cls").kind == "broadcast"
    (got,) = run_model_reference(read, [ids])
    np.testing.assert_allclose(got, np.broadcast_to(CLS, (2, 1, 2)), rtol=0, atol=1e-6)


def _masked_graph() -> ModelGraph:
    """The LSTM from learned states over a masked x, the class token an output it does not
    read: every broadcast reads the masked x, and the LSTM both its mask and the states."""
    graph = broadcast_graph()
    masked = LayerRecord("masked", "masking", "Masking", ("x",), {"mask_value": 0.0})
    held = [replace(graph.layer(name), inputs=("masked",)) for name in BROADCASTS]
    lstm = replace(graph.layer("lstm"), inputs=("masked", "h0", "c0"))
    return replace(graph, layers=(graph.layer("x"), masked, *held, lstm))


def test_a_masked_input_is_read_by_the_lstm_from_learned_states(tmp_path: Path) -> None:
    graph = _masked_graph()
    x = X.copy()
    x[0, 3:] = x[2, 1] = 0.0  # padding at the end, and a step skipped in the middle
    with warnings.catch_warnings():  # a broadcast drops the mask it is given, quietly
        warnings.filterwarnings("error", message=".*does not support masking")
        model = graph_to_keras(graph)
    expected = run_model_reference(graph, [x], dtype=np.float32)
    model.save(tmp_path / "masked.keras")
    register_keras_activations()
    loaded = keras.saving.load_model(tmp_path / "masked.keras")
    for run in (model, loaded):
        for got, reference in zip(run(x.astype("float32")), expected):
            np.testing.assert_allclose(np.asarray(got), reference, rtol=0, atol=1e-5)
    read = read_model(tmp_path / "masked.keras")
    assert _layers(read) == _layers(graph)
    for got, reference in zip(run_model_reference(read, [x]), run_model_reference(graph, [x])):
        np.testing.assert_allclose(got, reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ([2, 1], r"'cls'.*option 'shape' is \[2, 1\]; expected its weight's, \[1, 2\]"),
        ([1, 0], r"'cls'.*option 'shape' is \[1, 0\]; expected a list of sizes of at least 1"),
        ("1x2", r"'cls'.*option 'shape' is '1x2'"),
    ],
)
def test_a_shape_other_than_its_weights_is_refused(
    saved: Path, tmp_path: Path, shape: object, message: str
) -> None:
    def edit(entry: dict[str, Any]) -> None:
        entry["config"]["options"]["shape"] = shape

    with pytest.raises(UnsupportedFeatureError, match=message):
        read_model(edited(saved, tmp_path / "shape.keras", edit, "cls"))


def test_a_broadcast_reading_two_tensors_is_refused(saved: Path, tmp_path: Path) -> None:
    x = {"class_name": "__keras_tensor__", "config": {"keras_history": ["x", 0, 0]}}

    def edit(entry: dict[str, Any]) -> None:
        entry["inbound_nodes"] = [{"args": [[x, x]], "kwargs": {}}]

    path = edited(saved, tmp_path / "two.keras", edit, "h0")
    with pytest.raises(UnsupportedFeatureError, match=r"'h0'.*reads 2 tensors; expected 1"):
        read_model(path)


def test_a_class_of_the_same_name_from_another_module_is_refused(
    saved: Path, tmp_path: Path
) -> None:
    def edit(entry: dict[str, Any]) -> None:
        entry["module"] = "xframe_bilstm.adapters.keras.packed"  # the package's, not this class's

    path = edited(saved, tmp_path / "elsewhere.keras", edit, "cls")
    with pytest.raises(UnsupportedFeatureError, match="'BatchBroadcast' names module"):
        read_model(path)
