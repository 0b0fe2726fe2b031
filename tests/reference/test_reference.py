"""The reference against cases worked out by hand, and against itself where it must agree.

Its agreement with PyTorch and Keras in float64 is tested in ``tests/adapters``.
"""

from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm import (
    DirectionWeights,
    RecurrentLayer,
    RecurrentStack,
    WeightShapeError,
    run_reference,
)
from xframe_bilstm.activations import NUMPY_ACTIVATIONS


def summing_rnn(direction: str, merge_mode: str | None = "concat") -> RecurrentLayer:
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
    )


X = np.array([[[1.0], [2.0], [3.0]]])  # (B=1, T=3, D=1)


def sequence(result: tuple[np.ndarray, ...]) -> list:
    return result[0][0].tolist()


def test_forward_outputs_are_running_sums() -> None:
    assert sequence(run_reference(RecurrentStack((summing_rnn("forward"),)), X)) == [[1], [3], [6]]


def test_go_backwards_outputs_stay_in_processing_order() -> None:
    # Reads 3, 2, 1 and does not flip its outputs back.
    assert sequence(run_reference(RecurrentStack((summing_rnn("backward"),)), X)) == [[3], [5], [6]]


def test_bidirectional_flips_backward_half_into_input_time() -> None:
    result = run_reference(RecurrentStack((summing_rnn("bidirectional"),)), X)
    assert sequence(result) == [[1, 6], [3, 5], [6, 3]]


@pytest.mark.parametrize(
    ("merge_mode", "expected"),
    [("sum", [[7], [8], [9]]), ("mul", [[6], [15], [18]]), ("ave", [[3.5], [4], [4.5]])],
)
def test_merge_modes(merge_mode: str, expected: list) -> None:
    result = run_reference(RecurrentStack((summing_rnn("bidirectional", merge_mode),)), X)
    assert sequence(result) == expected


def test_bidirectional_without_sequences_returns_both_final_states() -> None:
    stack = RecurrentStack((summing_rnn("bidirectional", None),), return_sequences=False)
    forward, backward = run_reference(stack, X)
    assert forward.tolist() == [[6]] and backward.tolist() == [[6]]


def test_masked_steps_carry_output_in_plain_layers() -> None:
    result = run_reference(RecurrentStack((summing_rnn("forward"),)), X, lengths=[2])
    assert sequence(result) == [[1], [3], [3]]


def test_masked_steps_are_zero_inside_bidirectional() -> None:
    # Backward half reads [3 (masked), 2, 1]: the pad leaves the state at zero.
    result = run_reference(RecurrentStack((summing_rnn("bidirectional"),)), X, lengths=[2])
    assert sequence(result) == [[1, 3], [3, 2], [0, 0]]


def test_masked_go_backwards_starts_at_last_valid_step() -> None:
    result = run_reference(RecurrentStack((summing_rnn("backward"),)), X, lengths=[2])
    assert sequence(result) == [[0], [2], [3]]


def test_final_state_is_taken_at_last_valid_step() -> None:
    stack = RecurrentStack((summing_rnn("forward"),), return_sequences=False, return_state=True)
    output, h = run_reference(stack, X, lengths=[2])
    assert output.tolist() == [[3]] and h.tolist() == [[3]]


def test_initial_state_is_added_in() -> None:
    stack = RecurrentStack((summing_rnn("forward"),))
    assert sequence(run_reference(stack, X, initial_states=[np.array([[10.0]])])) == [
        [11],
        [13],
        [16],
    ]


def test_lstm_by_hand() -> None:
    # Keras 2 hard sigmoid and linear activation keep every value an exact decimal.
    # kernel gates (i, f, c, o) = (0, 0, 2, 2.5): i = f = 0.5, candidate 2, o = 1.
    kernel = np.array([[0.0, 0.0, 2.0, 2.5]])
    recurrent = np.array([[1.0, 0.0, 0.0, 0.0]])  # h feeds the input gate only
    layer = RecurrentLayer(
        "lstm",
        1,
        1,
        (DirectionWeights(kernel, recurrent),),
        activation="linear",
        recurrent_activation="hard_sigmoid_keras2",
    )
    stack = RecurrentStack((layer,), return_state=True)
    output, h, c = run_reference(stack, np.ones((1, 2, 1)))
    np.testing.assert_array_equal(h, output[:, -1])
    # Step 1: c = 0.5·0 + 0.5·2 = 1, h = 1·1 = 1.
    # Step 2: i = 0.2·1 + 0.5 = 0.7, c = 0.5·1 + 0.7·2 = 1.9, h = 1.9.
    np.testing.assert_allclose(output[0, :, 0], [1.0, 1.9], rtol=0, atol=1e-15)
    np.testing.assert_allclose(c, [[1.9]], rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("reset_after", "expected"),
    [
        # Step 1 (h = 0): candidate = 2 + r·(0 + 0.5) = 2.5, h = 0.5·0 + 0.5·2.5 = 1.25.
        # Step 2: candidate = 2 + r·(1.25 + 0.5) = 3.75, h = 0.5·1.25 + 0.5·3.75 = 2.5.
        pytest.param(True, [1.25, 2.5], id="reset_after"),
        # Step 1: candidate = 2 + (r·0)·1 = 2, h = 1. Step 2: candidate = 2 + (r·1)·1 = 3,
        # h = 0.5·1 + 0.5·3 = 2.
        pytest.param(False, [1.0, 2.0], id="reset_before"),
    ],
)
def test_gru_by_hand(reset_after: bool, expected: list) -> None:
    # Gates (z, r, h) with x = 1: z = 0.5 (keeps half the old state), r = 1, candidate 2.
    kernel = np.array([[0.0, 2.5, 2.0]])
    recurrent = np.array([[0.0, 0.0, 1.0]])
    bias = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.5]]) if reset_after else None
    layer = RecurrentLayer(
        "gru",
        1,
        1,
        (DirectionWeights(kernel, recurrent, bias),),
        activation="linear",
        recurrent_activation="hard_sigmoid_keras2",
        reset_after=reset_after,
    )
    (output,) = run_reference(RecurrentStack((layer,)), np.ones((1, 2, 1)))
    np.testing.assert_allclose(output[0, :, 0], expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("name", "at_two"),
    [
        ("hard_sigmoid_keras2", 0.9),
        ("hard_sigmoid_keras3", 2 / 6 + 0.5),
        ("sigmoid", 1 / (1 + np.exp(-2.0))),
        ("softsign", 2 / 3),
        ("softplus", np.log1p(np.exp(2.0))),
        ("silu", 2 / (1 + np.exp(-2.0))),
        ("elu", 2.0),
    ],
)
def test_activations_by_definition(name: str, at_two: float) -> None:
    assert NUMPY_ACTIVATIONS[name](np.array(2.0)) == pytest.approx(at_two, rel=1e-15)


def test_sigmoid_is_stable_for_large_inputs() -> None:
    values = NUMPY_ACTIVATIONS["sigmoid"](np.array([-800.0, 800.0]))
    assert values.tolist() == [0.0, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"x": np.ones((1, 3))}, r"x: expected shape \(batch, time, 1\)", id="rank"),
        pytest.param({"x": np.ones((1, 3, 2))}, r"x: expected shape", id="features"),
        pytest.param({"x": np.ones((1, 0, 1))}, "at least one", id="no-steps"),
        pytest.param({"lengths": [4]}, r"lengths: each must be in 1\.\.3", id="too-long"),
        pytest.param({"lengths": [0]}, r"lengths: each must be in 1\.\.3", id="empty"),
        pytest.param({"lengths": [1, 2]}, "one per batch row", id="count"),
        pytest.param({"lengths": [1.5]}, "integers", id="float-lengths"),
        pytest.param({"initial_states": []}, "expected 1 arrays", id="state-count"),
        pytest.param(
            {"initial_states": [np.ones((2, 1))]}, r"expected shape \(1, 1\)", id="state-shape"
        ),
    ],
)
def test_bad_input_raises_naming_argument(kwargs: dict, match: str) -> None:
    arguments = {"x": X, **kwargs}
    x = arguments.pop("x")
    with pytest.raises(WeightShapeError, match=match):
        run_reference(RecurrentStack((summing_rnn("forward"),)), x, **arguments)
