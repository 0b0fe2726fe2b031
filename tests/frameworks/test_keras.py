"""The Keras framework shares one built layer per structure, and every run gets its weights."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from xframe_bilstm.comparison import derived_tolerance
from xframe_bilstm.frameworks import KerasFramework, RunSpec, keras_shared
from xframe_bilstm.matrix import cell_lengths, cell_stack, lane_cells, load_table
from xframe_bilstm.reference import run_reference

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
