"""Models used as layers, read inline from every format: a siamese model's encoder (a
Sequential or a functional model called on each input), and models nested two deep.

Expected values are the Keras model's own call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import compare, keras_to_torch  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402
from xframe_bilstm.models.live import graph_from_keras  # noqa: E402

from ...saved_models import randomize, token_batch  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def _sequential_encoder() -> Any:
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            layers.Embedding(30, 8, mask_zero=True, name="embedding"),
            layers.Bidirectional(layers.LSTM(5), name="lstm"),
            layers.Dense(4, name="project"),
        ],
        name="encoder",
    )


def _functional_encoder() -> Any:
    layers = keras.layers
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = layers.Embedding(30, 8, mask_zero=True, name="embedding")(ids)
    x = layers.GRU(5, return_sequences=True, name="gru")(x)
    x = layers.GlobalMaxPooling1D(name="pool")(x)
    return keras.Model(ids, layers.Dense(4, name="project")(x), name="encoder")


ENCODERS = {"sequential": _sequential_encoder, "functional": _functional_encoder}


def siamese(encoder: Any) -> Any:
    left = keras.Input((None,), dtype="int32", name="left")
    right = keras.Input((None,), dtype="int32", name="right")
    a, b = encoder(left), encoder(right)
    difference = keras.layers.Subtract(name="difference")([a, b])
    model = keras.Model([left, right], keras.layers.Dense(1, name="head")(difference))
    randomize(model, 3)
    return model


def _pair() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [token_batch(rng), token_batch(rng)]


@pytest.fixture(scope="module", params=sorted(ENCODERS))
def saved(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Path]]:
    model = siamese(ENCODERS[request.param]())
    folder = tmp_path_factory.mktemp(request.param)
    paths = {suffix: folder / f"siamese{suffix}" for suffix in (".keras", ".h5")}
    for path in paths.values():
        model.save(path)
    return model, paths


def test_each_call_of_the_encoder_is_a_call_of_each_of_its_layers(saved) -> None:
    model, paths = saved
    for graph in (graph_from_keras(model), *(read_model(path) for path in paths.values())):
        names = {record.name: record.shares for record in graph.layers}
        assert names["encoder.embedding"] == "" and names["encoder.project"] == ""
        assert names["encoder@1.embedding"] == "encoder.embedding"
        assert names["encoder@1.project"] == "encoder.project"
        assert graph.layer("encoder@1.embedding").inputs == ("right",)
        assert graph.layer("difference").inputs == ("encoder.project", "encoder@1.project")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_the_file_ports_with_the_encoder_held_once(saved, suffix: str) -> None:
    model, paths = saved
    inputs = _pair()
    port = keras_to_torch(paths[suffix])
    assert "load_model" in port.verified_against
    names = list(port.state_dict())
    assert not any("@" in name for name in names)
    assert sum(name.startswith("encoder_project.") for name in names) == 2  # weight, bias
    with torch.no_grad():
        actual = port(*map(torch.from_numpy, inputs)).numpy()
    expected = np.asarray(model(inputs))
    assert np.abs(actual - expected).max() <= derived_tolerance(read_model(paths[suffix]), inputs)


def test_compare_of_the_live_model_runs_it_as_keras_does(saved) -> None:
    model, _ = saved
    report = compare(model, inputs=_pair(), frameworks=["torch", "keras"])
    assert report, report
    assert "keras[cpu,float32]@original" in str(report)


def test_models_nested_two_deep_in_a_sequential_port_from_every_format(tmp_path: Path) -> None:
    layers = keras.layers
    inner = keras.Sequential(
        [
            keras.Input((None, 4)),
            layers.LSTM(5, return_sequences=True, name="lstm"),
            layers.Dense(4, name="dense"),
        ],
        name="inner",
    )
    steps = keras.Input((None, 4), name="steps")
    middle = keras.Model(steps, layers.GRU(3)(inner(layers.Dense(4)(steps))), name="middle")
    model = keras.Sequential([keras.Input((None, 4)), middle, layers.Dense(2, name="head")])
    randomize(model, 5)
    x = np.random.default_rng(8).standard_normal((3, 6, 4)).astype("float32")
    expected = np.asarray(model(x))
    sources: list[Any] = [model]
    for suffix in (".keras", ".h5"):
        model.save(tmp_path / f"deep{suffix}")
        sources.append(tmp_path / f"deep{suffix}")
    for source in sources:
        port = keras_to_torch(source)
        with torch.no_grad():
            actual = port(torch.from_numpy(x)).numpy()
        assert np.abs(actual - expected).max() <= derived_tolerance(graph_from_keras(model), [x])
    names = [record.name for record in read_model(tmp_path / "deep.keras").layers]
    assert [name for name in names if name.startswith("middle.inner.")] == [
        "middle.inner.lstm",
        "middle.inner.dense",
    ]


def test_a_layer_shared_inside_a_model_called_twice_keeps_every_call_apart(tmp_path: Path) -> None:
    layers = keras.layers
    steps = keras.Input((None, 4), name="steps")
    twice = layers.Dense(4, activation="tanh", name="twice")  # called twice inside
    inner = keras.Model(steps, layers.GRU(3, name="gru")(twice(twice(steps))), name="inner")
    a, b = keras.Input((None, 4), name="a"), keras.Input((None, 4), name="b")
    model = keras.Model([a, b], layers.Subtract(name="difference")([inner(a), inner(b)]))
    randomize(model, 6)
    path = tmp_path / "twice.keras"
    model.save(path)
    graph = read_model(path)
    calls = {r.name: r.shares for r in graph.layers if "twice" in r.name}
    assert calls == {
        "inner.twice": "",
        "inner.twice@1": "inner.twice",  # the layer's own second call
        "inner@1.twice": "inner.twice",  # the model's second call
        "inner@1.twice@1": "inner.twice",
    }
    x = [
        np.random.default_rng(seed).standard_normal((2, 5, 4)).astype("float32") for seed in (1, 2)
    ]
    with torch.no_grad():
        actual = keras_to_torch(path)(*map(torch.from_numpy, x)).numpy()
    assert np.abs(actual - np.asarray(model(x))).max() <= derived_tolerance(graph, x)
