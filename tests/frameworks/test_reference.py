"""The float64 reference as a framework: one gradient path for stacks and whole models."""

from __future__ import annotations

import numpy as np

from xframe_bilstm.factories import random_stack
from xframe_bilstm.frameworks.base import RunSpec
from xframe_bilstm.frameworks.reference import ReferenceFramework
from xframe_bilstm.graph import LayerRecord, ModelGraph
from xframe_bilstm.reference import reference_gradients, reference_outputs

SPEC = RunSpec("reference", "cpu", "float64")


def test_a_stack_s_gradients_keep_the_canonical_names_and_values() -> None:
    rng = np.random.default_rng(0)
    stack = random_stack(rng, "lstm", 3, 2, num_layers=2, direction="bidirectional")
    x, lengths = rng.standard_normal((2, 4, 3)), np.array([4, 2])
    states = [rng.standard_normal((2, 2)) for _ in range(8)]
    outputs = reference_outputs(stack, x, initial_states=states, lengths=lengths)
    cotangents = [rng.standard_normal(y.shape) for y in outputs]
    given = {"initial_states": states, "lengths": lengths}
    found = ReferenceFramework().gradients(stack, x, SPEC, cotangents, **given).arrays
    want = reference_gradients(stack, x, cotangents, **given).named()
    assert list(found) == list(want)
    assert list(found)[:2] == ["inputs", "initial_states[0]"]
    assert "layers[1].backward.recurrent_kernel" in found
    for name, value in want.items():
        np.testing.assert_array_equal(found[name], value, err_msg=name)
    # No initial states given: none reported, as the frameworks report none.
    bare = ReferenceFramework().gradients(
        stack, x, SPEC, cotangents, initial_states=None, lengths=lengths
    )
    assert not any(name.startswith("initial_states") for name in bare.arrays)


def test_a_whole_model_s_gradients_are_named_by_layer() -> None:
    rng = np.random.default_rng(1)
    x = LayerRecord("x", "input", "InputLayer", options={"shape": (3,), "dtype": "float32"})
    options = {"activation": "tanh", "time_distributed": False}
    weights = {"kernel": rng.standard_normal((3, 2)), "bias": rng.standard_normal(2)}
    dense = LayerRecord("d", "dense", "Dense", ("x",), options, weights)
    graph = ModelGraph("m", (x, dense), ("x",), ("d",))
    found = ReferenceFramework().gradients(
        graph,
        rng.standard_normal((4, 3)),
        SPEC,
        [np.ones((4, 2))],
        initial_states=None,
        lengths=None,
    )
    assert list(found.arrays) == ["inputs", "d/kernel", "d/bias"]
