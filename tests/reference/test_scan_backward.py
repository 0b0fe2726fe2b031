"""The taped scan against the forward scan, and how padded steps pass gradients, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm import DirectionWeights, RecurrentLayer, RecurrentStack
from xframe_bilstm.reference import reference_gradients
from xframe_bilstm.reference.scan import run_layer
from xframe_bilstm.reference.scan_backward import forward_layer

from .finite_differences import random_layer


def summing_rnn(direction: str, merge_mode: str | None = "concat", **options) -> RecurrentLayer:
    """A linear SimpleRNN with kernel 1 and recurrent kernel 1: h_t = h_{t-1} + x_t."""
    weights = DirectionWeights(np.ones((1, 1)), np.ones((1, 1)))
    count = 2 if direction == "bidirectional" else 1
    return RecurrentLayer(
        "simple_rnn",
        1,
        1,
        (weights,) * count,
        direction,
        merge_mode,
        activation="linear",
        recurrent_activation=None,
        **options,
    )


X = np.array([[[1.0], [2.0], [3.0]]])  # (B=1, T=3, D=1)


def input_gradient(layer: RecurrentLayer, cotangent: list, **options) -> list:
    stack = RecurrentStack((layer,), **options)
    grads = reference_gradients(stack, X, [np.array(cotangent)], lengths=[2])
    return grads.inputs[0, :, 0].tolist()


@pytest.mark.parametrize("direction", ["forward", "backward", "bidirectional"])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("lengths", [None, [3, 1]])
def test_taped_layer_computes_the_forward_layer_bit_for_bit(
    direction: str, return_sequences: bool, lengths: list | None
) -> None:
    rng = np.random.default_rng(0)
    layer = random_layer(rng, "lstm", 2, 3, direction=direction)
    x = rng.standard_normal((2, 3, 2))
    states = [rng.standard_normal((2, 3)) for _ in range(2 * len(layer.weights))]
    mask = None if lengths is None else np.arange(3)[None, :] < np.array(lengths)[:, None]
    plain = run_layer(layer, x, states, mask, return_sequences=return_sequences, dtype=np.float64)
    taped = forward_layer(
        layer, x, states, mask, return_sequences=return_sequences, dtype=np.float64
    )
    for a, b in zip(plain[0] + plain[1], taped[0] + taped[1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_repeated_output_sends_its_gradient_to_the_step_it_repeats() -> None:
    # Outputs (x1, x1 + x2, x1 + x2): the padded step repeats step 2's output.
    assert input_gradient(summing_rnn("forward"), [[[1.0], [1.0], [1.0]]]) == [3.0, 2.0, 0.0]


def test_zeroed_output_sends_no_gradient() -> None:
    layer = summing_rnn("forward", zero_masked_outputs=True)
    # Outputs (x1, x1 + x2, 0).
    assert input_gradient(layer, [[[1.0], [1.0], [1.0]]]) == [2.0, 1.0, 0.0]


def test_padded_step_passes_the_state_gradient_through() -> None:
    # The final state is taken at the last valid step: h = x1 + x2.
    stack = RecurrentStack((summing_rnn("forward"),), return_sequences=False, return_state=True)
    grads = reference_gradients(
        stack,
        X,
        [np.zeros((1, 1)), np.ones((1, 1))],
        initial_states=[np.zeros((1, 1))],
        lengths=[2],
    )
    assert grads.inputs[0, :, 0].tolist() == [1.0, 1.0, 0.0]
    assert grads.initial_states[0].tolist() == [[1.0]]


def test_go_backwards_reads_the_valid_steps_from_the_last() -> None:
    # Processing order (pad, x2, x1): outputs (0, x2, x1 + x2), in that order.
    assert input_gradient(summing_rnn("backward"), [[[5.0], [1.0], [1.0]]]) == [1.0, 2.0, 0.0]


def test_bidirectional_flips_the_backward_gradient_back_into_input_time() -> None:
    # Forward half (x1, x1 + x2, 0); backward half in input time (x1 + x2, x2, 0).
    cotangent = [[[1.0, 10.0], [1.0, 100.0], [7.0, 7.0]]]
    assert input_gradient(summing_rnn("bidirectional"), cotangent) == [12.0, 111.0, 0.0]
