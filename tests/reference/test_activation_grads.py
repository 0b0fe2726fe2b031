"""Each activation's derivative against central finite differences of the activation itself."""

from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm import UnsupportedFeatureError
from xframe_bilstm.activations import NUMPY_ACTIVATIONS
from xframe_bilstm.reference import activation_grads
from xframe_bilstm.reference.activation_grads import ACTIVATION_VJPS, activation_vjp

# Where an activation or its derivative jumps; finite differences are kept away from them.
KINKS = np.array([0.0, -0.5, 0.5, -1.0, 1.0, -2.5, 2.5, -3.0, 3.0, 6.0])
EPSILON = 1e-6


def points(rng: np.random.Generator) -> np.ndarray:
    z = rng.uniform(-5.0, 7.0, 400)
    z = z[np.abs(z[:, None] - KINKS[None, :]).min(axis=1) > 1e-3]
    return z[:60].reshape(3, 20)


def test_every_activation_the_forward_runs_has_a_derivative() -> None:
    assert set(ACTIVATION_VJPS) == set(NUMPY_ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(NUMPY_ACTIVATIONS))
def test_vjp_matches_finite_differences(name: str) -> None:
    rng = np.random.default_rng(sum(map(ord, name)))
    z, g = points(rng), rng.standard_normal((3, 20))
    act = NUMPY_ACTIVATIONS[name]
    expected = np.zeros_like(z)
    # The whole vector-Jacobian product, so log_softmax's mixing of the last axis counts.
    for position in np.ndindex(z.shape):
        plus, minus = z.copy(), z.copy()
        plus[position] += EPSILON
        minus[position] -= EPSILON
        expected[position] = np.sum(g * (act(plus) - act(minus))) / (2 * EPSILON)
    ours = activation_vjp(name)(z, act(z), g)
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("name", "slope_at_kink"), [("relu", 0.0), ("hard_tanh", 0.0), ("relu6", 0.0)]
)
def test_kinks_take_the_flat_side(name: str, slope_at_kink: float) -> None:
    kink = {"relu": 0.0, "hard_tanh": 1.0, "relu6": 6.0}[name]
    z = np.array([kink])
    assert activation_vjp(name)(z, NUMPY_ACTIVATIONS[name](z), np.ones(1)).tolist() == [
        slope_at_kink
    ]


def test_float32_stays_float32() -> None:
    z = np.linspace(-2, 2, 8, dtype=np.float32)
    for name, act in NUMPY_ACTIVATIONS.items():
        assert activation_vjp(name)(z, act(z), np.ones_like(z)).dtype == np.float32, name


def test_unknown_activation_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedFeatureError, match="recurrent_activation='swish2'"):
        activation_vjp("swish2", "recurrent_activation")


def test_activation_without_a_derivative_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An activation the forward knows but whose derivative is not written.
    monkeypatch.delitem(activation_grads.ACTIVATION_VJPS, "mish")
    with pytest.raises(UnsupportedFeatureError, match="activation='mish': the gradient"):
        activation_vjp("mish")
