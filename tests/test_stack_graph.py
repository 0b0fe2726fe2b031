"""A stack as a graph with one node per layer; initial states and lengths a graph takes.

Expected values come from Keras running the layers and models itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch  # noqa: F401  (torch before TensorFlow in every process)

from xframe_bilstm.errors import UnsupportedFeatureError, WeightShapeError
from xframe_bilstm.graph import LayerRecord, ModelGraph
from xframe_bilstm.reference import reference_outputs, run_model_reference
from xframe_bilstm.sources import read_source
from xframe_bilstm.stack_graph import stack_graph, stack_of, takes_lengths

keras = pytest.importorskip("keras")

ROWS, STEPS, FEATURES, UNITS = 3, 5, 4, 3


def _input(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((ROWS, STEPS, FEATURES))


def _states(count: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((ROWS, UNITS)) for _ in range(count)]


def _keras_stack() -> object:
    """Two layers: an LSTM returning sequences, then an unmerged Bidirectional GRU that
    returns its states (two outputs, then h per direction)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((STEPS, FEATURES), dtype="float64")
    first = keras.layers.LSTM(UNITS, return_sequences=True, dtype="float64")
    gru = keras.layers.GRU(UNITS, return_sequences=True, return_state=True, dtype="float64")
    second = keras.layers.Bidirectional(gru, merge_mode=None, dtype="float64")
    return first, second, inputs


def test_a_stack_graph_has_one_node_per_layer_and_the_stacks_outputs() -> None:
    first, second, inputs = _keras_stack()
    second(first(inputs))
    stack = read_source(keras.Sequential([inputs, first, second])).reading
    graph = stack_graph(stack)
    assert [(r.name, r.kind, r.class_name) for r in graph.layers] == [
        ("x", "input", "InputLayer"),
        ("layers[0]", "recurrent", "LSTM"),
        ("layers[1]", "recurrent", "Bidirectional"),
    ]
    # output forward, output backward, h forward, h backward: as Keras returns them
    assert graph.outputs == ("layers[1]", "layers[1]:1", "layers[1]:2", "layers[1]:3")
    assert graph.masked("x") and graph.masked("layers[0]")
    assert stack_of(graph) == stack  # the graph says which stack it is


def test_only_a_stacks_own_graph_reads_back_as_a_stack() -> None:
    ids = keras.Input((STEPS,), dtype="int32")
    embedded = keras.layers.Embedding(10, FEATURES, dtype="float64")(ids)
    model = keras.Model(ids, keras.layers.LSTM(UNITS, dtype="float64")(embedded))
    reading = read_source(model).reading
    assert stack_of(reading) is None  # an Embedding before the layers
    assert not takes_lengths(reading)  # it masks by its values, not by lengths


def test_a_stateful_stack_reads_back_stateful() -> None:
    from dataclasses import replace

    from xframe_bilstm.factories import random_stack

    stack = random_stack(np.random.default_rng(0), "lstm", FEATURES, UNITS, num_layers=2)
    stateful = replace(stack, stateful=True)
    assert stack_of(stack_graph(stateful)) == stateful
    assert stack_of(stack_graph(stack)) == stack


def test_a_stack_runs_on_the_graph_reference_as_keras_with_states_and_lengths() -> None:
    first, second, inputs = _keras_stack()
    second(first(inputs))
    stack = read_source(keras.Sequential([inputs, first, second])).reading
    x, lengths = _input(), np.array([5, 2, 4])
    states = _states(2 + 2)  # h, c of the LSTM; h per direction of the GRU
    mask = np.arange(STEPS)[None, :] < lengths[:, None]
    middle = first(x, mask=mask, initial_state=states[:2])
    expected = [np.asarray(a) for a in second(middle, mask=mask, initial_state=states[2:])]
    got = reference_outputs(stack, x, initial_states=states, lengths=lengths)
    assert len(got) == len(expected) == 4
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_allclose(have, want, rtol=1e-9, atol=1e-9)


def _tagger() -> tuple[object, object]:
    """The same LSTM and Dense, once starting from zeros and once from state inputs."""
    keras.utils.set_random_seed(0)
    x = keras.Input((STEPS, FEATURES), dtype="float64")
    h, c = keras.Input((UNITS,), dtype="float64"), keras.Input((UNITS,), dtype="float64")
    lstm = keras.layers.LSTM(UNITS, return_sequences=True, dtype="float64")
    dense = keras.layers.Dense(2, activation="tanh", dtype="float64")
    plain = keras.Model(x, dense(lstm(x)))
    fed = keras.Model([x, h, c], dense(lstm(x, initial_state=[h, c])))
    return plain, fed


def test_a_whole_model_takes_initial_states_for_its_recurrent_layers() -> None:
    plain, fed = _tagger()
    graph = read_source(plain).reading
    assert isinstance(graph, ModelGraph)
    x, states = _input(), _states(2)
    expected = np.asarray(fed([x, *states]))
    (got,) = run_model_reference(graph, [x], initial_states=states)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
    with pytest.raises(WeightShapeError, match=r"initial_states \(lstm\w* c\): expected shape"):
        run_model_reference(graph, [x], initial_states=[states[0], np.zeros((ROWS, 7))])


def test_a_model_that_feeds_its_own_states_refuses_them_by_layer_name() -> None:
    _, fed = _tagger()
    graph = read_source(fed).reading
    x, states = _input(), _states(2)
    with pytest.raises(UnsupportedFeatureError, match=r"initial_states: .*lstm\w* \(LSTM\) read"):
        run_model_reference(graph, [x, *states], initial_states=states)


def test_a_model_without_recurrent_layers_refuses_initial_states() -> None:
    record = LayerRecord("x", "input", "InputLayer", options={"shape": (2,), "dtype": "f"})
    graph = ModelGraph("m", (record,), ("x",), ("x",))
    with pytest.raises(UnsupportedFeatureError, match="has no recurrent layer"):
        run_model_reference(graph, [np.zeros((1, 2))], initial_states=[np.zeros((1, 2))])
