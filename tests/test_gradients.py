"""What the gradient comparison reads from the graph: whether the reference can
differentiate it, and what each initial state is called in a report."""

from __future__ import annotations

import numpy as np

from xframe_bilstm.factories import random_stack
from xframe_bilstm.gradients import _state_labels, gradient_refusal
from xframe_bilstm.graph import LayerRecord, ModelGraph
from xframe_bilstm.stack_graph import stack_graph


def test_a_stack_and_its_graph_can_be_differentiated() -> None:
    stack = random_stack(np.random.default_rng(0), "gru", 3, 2, num_layers=2)
    assert gradient_refusal(stack) is None
    assert gradient_refusal(stack_graph(stack)) is None


def test_a_layer_without_a_backward_is_named() -> None:
    x = LayerRecord("x", "input", "InputLayer", options={"shape": (3,), "dtype": "f"})
    norm = LayerRecord("bn", "layer_norm", "LayerNormalization", ("x",), {"axis": (-1,)})
    why = gradient_refusal(ModelGraph("m", (x, norm), ("x",), ("bn",)))
    assert why is not None and "'bn' (LayerNormalization, kind layer_norm)" in why


def test_initial_states_are_named_by_layer_in_a_deeper_stack() -> None:
    rng = np.random.default_rng(0)
    one = random_stack(rng, "lstm", 3, 2, direction="bidirectional")
    assert _state_labels(one) == ["h_forward", "c_forward", "h_backward", "c_backward"]
    two = random_stack(rng, "gru", 3, 2, num_layers=2)
    assert _state_labels(two) == ["layers[0].h", "layers[1].h"]
    assert _state_labels(stack_graph(two)) == _state_labels(two)
