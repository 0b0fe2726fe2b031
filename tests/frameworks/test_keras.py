"""The Keras framework shares one built layer per structure, and every run gets its weights;
a stack and the graph of that stack run (and differentiate) as that one layer."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from xframe_bilstm.comparison import derived_tolerance
from xframe_bilstm.frameworks import KerasFramework, RunSpec, keras_shared
from xframe_bilstm.matrix import cell_lengths, cell_stack, lane_cells, load_table
from xframe_bilstm.reference import reference_gradients, run_reference
from xframe_bilstm.stack_graph import stack_graph

pytest.importorskip("torch")
pytest.importorskip("keras")

SPEC = RunSpec("keras", "cpu", "float32")


def _cells():
    cells, _ = lane_cells(load_table(), "default", available=set())
    base = next(c for c in cells if c.layers == 2 and c.merge_mode == "sum" and c.mask != "none")
    # One structure, three sets of weights and inputs: other seeds (ids), other scales.
    return [base, replace(base, weight_scale=3.0), replace(base, weight_scale=0.5, batch=5)]


def test_runs_of_one_structure_share_a_layer_and_each_matches_the_reference() -> None:
    framework = KerasFramework()
    layers = set()
    for cell in _cells():
        stack = cell_stack(cell)
        x = np.random.default_rng(cell.seed).standard_normal((cell.batch, cell.steps, 5))
        lengths = np.asarray(cell_lengths(cell))
        outputs, _ = framework.run(stack, x, SPEC, initial_states=None, lengths=lengths)
        expected = run_reference(stack, x, lengths=lengths)
        tolerance = derived_tolerance(stack, x, lengths=lengths)
        for got, want in zip(outputs, expected, strict=True):
            assert np.abs(got - want).max() <= tolerance, cell.id
        key = keras_shared.layer_key(stack, SPEC)
        layers.add(id(keras_shared._LAYERS[key]))
    assert len(layers) == 1


def test_a_stateful_stack_gets_a_layer_of_its_own() -> None:
    cell = _cells()[0]
    stack = replace(cell_stack(cell), stateful=True)
    x = np.random.default_rng(0).standard_normal((cell.batch, cell.steps, 5))
    before = dict(keras_shared._LAYERS)
    outputs, _ = KerasFramework().run(stack, x, SPEC, initial_states=None, lengths=None)
    (expected,) = run_reference(stack, x)[:1]
    assert np.abs(outputs[0] - expected).max() <= derived_tolerance(stack, x)
    assert list(keras_shared._LAYERS) == list(before)


def test_a_stack_and_its_graph_run_and_differentiate_as_one_shared_layer() -> None:
    cell = _cells()[0]
    stack = replace(cell_stack(cell), return_state=True)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((cell.batch, cell.steps, 5))
    lengths = np.asarray(cell_lengths(cell))
    framework = KerasFramework()
    spec = RunSpec("keras", "cpu", "float64")
    by_stack, settings = framework.run(stack, x, spec, initial_states=None, lengths=lengths)
    built = dict(keras_shared._LAYERS)
    graph = stack_graph(stack)
    by_graph, graph_settings = framework.run(graph, x, spec, initial_states=None, lengths=lengths)
    assert list(keras_shared._LAYERS) == list(built)  # the same layer ran
    assert graph_settings == settings
    for got, same, want in zip(by_graph, by_stack, run_reference(stack, x, lengths=lengths)):
        np.testing.assert_array_equal(got, same)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    cotangents = [rng.standard_normal(a.shape) for a in by_stack]
    grads = framework.gradients(graph, x, spec, cotangents, initial_states=None, lengths=lengths)
    want = reference_gradients(stack, x, cotangents, lengths=lengths)
    np.testing.assert_allclose(grads.arrays["inputs"], want.inputs, rtol=0, atol=1e-9)
    for name, value in want.weights.items():
        np.testing.assert_allclose(grads.arrays[name], value, rtol=0, atol=1e-9)
