"""A packed sequence rebuilt in Keras (``xframe_bilstm>LengthsMask``, ``>EndMask``) and the
valid steps of per-row lengths (``>ValidSteps``), saved and read back: the same records,
computing the same as the graph it was built from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.adapters.keras import graph_to_keras, register_keras_activations  # noqa: E402
from xframe_bilstm.graph import ModelGraph  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402
from xframe_bilstm.models.live import graph_from_keras  # noqa: E402
from xframe_bilstm.reference.graph import run_model_reference  # noqa: E402

from ...reference.test_lengths_mask import LENGTHS, X, packed_graph  # noqa: E402
from ...reference.test_valid_steps import IDS, valid_steps_graph  # noqa: E402
from ...reference.test_valid_steps import LENGTHS as ID_LENGTHS  # noqa: E402
from .edited import edited  # noqa: E402

pytestmark = pytest.mark.keras

DIRECTIONS = ["forward", "bidirectional"]


@pytest.fixture(scope="module", params=DIRECTIONS)
def saved(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ModelGraph, Path]:
    """The graph of one direction and its Keras model saved."""
    graph = packed_graph(request.param)
    path = tmp_path_factory.mktemp("packed") / "packed.keras"
    graph_to_keras(graph).save(path)
    return graph, path


def _layers(graph: ModelGraph) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(record.name, record.kind, record.inputs) for record in graph.layers]


def _check_read(read: ModelGraph, original: ModelGraph) -> None:
    assert _layers(read) == _layers(original)
    assert read.inputs == original.inputs and read.outputs == original.outputs
    assert read.layer("lengths").options["shape"] == ()
    assert read.layer("packed").options == read.layer("padded").options == {}
    for got, expected in zip(
        run_model_reference(read, [X, LENGTHS]), run_model_reference(original, [X, LENGTHS])
    ):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)  # float32 weights


def test_a_saved_file_reads_back_as_the_graph(saved: tuple[ModelGraph, Path]) -> None:
    graph, path = saved
    _check_read(read_model(path), graph)


def test_an_h5_file_reads_back_as_the_graph(tmp_path: Path) -> None:
    graph = packed_graph()
    graph_to_keras(graph).save(tmp_path / "packed.h5")
    _check_read(read_model(tmp_path / "packed.h5"), graph)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_a_live_model_reads_back_as_the_graph(direction: str) -> None:
    graph = packed_graph(direction)
    _check_read(graph_from_keras(graph_to_keras(graph)), graph)


def test_keras_loads_the_saved_file(saved: tuple[ModelGraph, Path]) -> None:
    graph, path = saved
    register_keras_activations()
    model = keras.saving.load_model(path)
    expected = run_model_reference(graph, [X, LENGTHS], dtype=np.float32)
    for value, reference in zip(model([X.astype("float32"), LENGTHS.astype("int32")]), expected):
        np.testing.assert_allclose(np.asarray(value), reference, rtol=0, atol=1e-5)


def test_a_class_of_the_same_name_from_another_module_is_refused(
    saved: tuple[ModelGraph, Path], tmp_path: Path
) -> None:
    module = "xframe_bilstm.adapters.keras.tensor_ops"  # the package's, but not this class's
    path = edited(
        saved[1], tmp_path / "elsewhere.keras", lambda e: e.update(module=module), "packed"
    )
    with pytest.raises(UnsupportedFeatureError, match="'LengthsMask' names module"):
        read_model(path)


def test_a_lengths_mask_reading_one_tensor_is_refused(
    saved: tuple[ModelGraph, Path], tmp_path: Path
) -> None:
    x = {"class_name": "__keras_tensor__", "config": {"keras_history": ["x", 0, 0]}}
    node = {"args": [[x]], "kwargs": {}}
    path = edited(
        saved[1], tmp_path / "one.keras", lambda e: e.update(inbound_nodes=[node]), "packed"
    )
    with pytest.raises(UnsupportedFeatureError, match=r"'packed'.*reads 1 tensors; expected 2"):
        read_model(path)


@pytest.mark.parametrize("source", ["valid.keras", "valid.h5", "live"])
def test_valid_steps_read_back_as_the_graph(source: str, tmp_path: Path) -> None:
    graph = valid_steps_graph()
    model = graph_to_keras(graph)
    if source == "live":
        read = graph_from_keras(model)
    else:
        model.save(tmp_path / source)
        read = read_model(tmp_path / source)
    assert _layers(read) == _layers(graph)
    assert read.inputs == graph.inputs and read.outputs == graph.outputs
    assert read.layer("lengths").options["shape"] == ()
    assert read.layer("valid").options == {}
    for got, expected in zip(
        run_model_reference(read, [IDS, ID_LENGTHS]),
        run_model_reference(graph, [IDS, ID_LENGTHS]),
    ):
        np.testing.assert_array_equal(got, expected)


def test_valid_steps_reading_one_tensor_is_refused(tmp_path: Path) -> None:
    graph_to_keras(valid_steps_graph()).save(tmp_path / "valid.keras")
    ids = {"class_name": "__keras_tensor__", "config": {"keras_history": ["ids", 0, 0]}}
    node = {"args": [[ids]], "kwargs": {}}
    path = edited(
        tmp_path / "valid.keras",
        tmp_path / "one.keras",
        lambda e: e.update(inbound_nodes=[node]),
        "valid",
    )
    with pytest.raises(UnsupportedFeatureError, match=r"'valid'.*reads 1 tensors; expected 2"):
        read_model(path)
