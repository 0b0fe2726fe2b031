"""Each cell's taped step against the forward's own step, and its backward step against
central finite differences of that step."""

from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm.activations import NUMPY_ACTIVATIONS
from xframe_bilstm.reference.activation_grads import ACTIVATION_VJPS
from xframe_bilstm.reference.cells import STEPS
from xframe_bilstm.reference.cells_backward import BACKWARD_STEPS, FORWARD_STEPS

CASES = [
    pytest.param("lstm", False, 4, 2, id="lstm"),
    pytest.param("gru", True, 3, 1, id="gru-reset_after"),
    pytest.param("gru", False, 3, 1, id="gru-reset_before"),
    pytest.param("simple_rnn", False, 1, 1, id="simple_rnn"),
]
EPSILON = 1e-6


def arguments(rng: np.random.Generator, gates: int, states: int) -> list[np.ndarray]:
    """xk (B, G·H), the states (B, H) each, R (H, G·H) and b' (G·H,), for B = 2, H = 3."""
    return [
        rng.standard_normal((2, gates * 3)),
        *(rng.standard_normal((2, 3)) for _ in range(states)),
        rng.normal(0, 0.5, (3, gates * 3)),
        rng.normal(0, 0.5, gates * 3),
    ]


@pytest.mark.parametrize(("cell", "reset_after", "gates", "states"), CASES)
def test_taped_step_computes_the_forward_step_bit_for_bit(
    cell: str, reset_after: bool, gates: int, states: int
) -> None:
    xk, *h, R, b_r = arguments(np.random.default_rng(0), gates, states)
    σ, act = NUMPY_ACTIVATIONS["sigmoid"], NUMPY_ACTIVATIONS["tanh"]
    taped, _ = FORWARD_STEPS[cell](xk, tuple(h), R, b_r, σ, act, reset_after)
    plain = STEPS[cell](xk, tuple(h), R, b_r, σ, act, reset_after)
    for a, b in zip(taped, plain, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("cell", "reset_after", "gates", "states"), CASES)
def test_backward_step_matches_finite_differences(
    cell: str, reset_after: bool, gates: int, states: int
) -> None:
    rng = np.random.default_rng(1)
    values = arguments(rng, gates, states)
    cotangents = [rng.standard_normal((2, 3)) for _ in range(states)]
    σ, act = NUMPY_ACTIVATIONS["sigmoid"], NUMPY_ACTIVATIONS["tanh"]

    def loss(args: list[np.ndarray]) -> float:
        xk, *h, R, b_r = args
        new = STEPS[cell](xk, tuple(h), R, b_r, σ, act, reset_after)
        return float(sum(np.sum(g * s) for g, s in zip(cotangents, new)))

    expected = []
    for index, array in enumerate(values):
        gradient = np.zeros(array.shape)
        for position in np.ndindex(array.shape):
            plus, minus = [v.copy() for v in values], [v.copy() for v in values]
            plus[index][position] += EPSILON
            minus[index][position] -= EPSILON
            gradient[position] = (loss(plus) - loss(minus)) / (2 * EPSILON)
        expected.append(gradient)

    xk, *h, R, b_r = values
    _, tape = FORWARD_STEPS[cell](xk, tuple(h), R, b_r, σ, act, reset_after)
    d_xk, d_states, d_R, d_b_r = BACKWARD_STEPS[cell](
        tape,
        tuple(cotangents),
        R,
        ACTIVATION_VJPS["sigmoid"],
        ACTIVATION_VJPS["tanh"],
        reset_after,
    )
    for name, ours, theirs in zip(
        ["xk", *(f"state{i}" for i in range(states)), "R", "b_r"],
        [d_xk, *d_states, d_R, d_b_r],
        expected,
        strict=True,
    ):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-8, err_msg=name)
