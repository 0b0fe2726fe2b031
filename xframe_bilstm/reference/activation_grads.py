"""The derivative of every activation the reference runs, as a vector-Jacobian product.

Each entry takes ``(z, y, g)``: the activation's input ``z``, its output ``y = act(z)`` and
the gradient ``g`` of a loss with respect to ``y``, and returns the gradient with respect
to ``z``. Element-wise activations return ``g * act'(z)``; ``log_softmax``, which mixes the
last axis, returns its full product. Where a function has a kink (``relu`` at 0, the clipped
ones at their bounds), the derivative there is the one of the flat side: 0, as PyTorch and
TensorFlow give for ``relu``. An activation without an entry here is refused by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..activations import _SELU_ALPHA, _SELU_SCALE, _sigmoid, check_activation
from ..errors import UnsupportedFeatureError

ActivationVjp = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715


def _inside(z: np.ndarray, low: float, high: float) -> np.ndarray:
    """1 strictly inside (low, high), 0 elsewhere: the slope of a clip, per unit of slope."""
    return ((z > low) & (z < high)).astype(z.dtype)


def _gelu(z: np.ndarray, y: np.ndarray, g: np.ndarray) -> np.ndarray:
    # d/dz z Φ(z) = Φ(z) + z φ(z); Φ(z) = y / z is unstable near 0, so Φ is recomputed.
    erf = np.vectorize(math.erf, otypes=[float])
    cdf = 0.5 * (1.0 + erf(np.asarray(z, np.float64) / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * np.asarray(z, np.float64) ** 2) / math.sqrt(2.0 * math.pi)
    return g * (cdf + np.asarray(z, np.float64) * pdf).astype(z.dtype)


def _gelu_tanh(z: np.ndarray, y: np.ndarray, g: np.ndarray) -> np.ndarray:
    t = np.tanh(_SQRT_2_OVER_PI * (z + _GELU_CUBIC * z**3))
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_CUBIC * z * z)
    return g * (0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * du)


def _mish(z: np.ndarray, y: np.ndarray, g: np.ndarray) -> np.ndarray:
    t = np.tanh(np.logaddexp(0.0, z))
    return g * (t + z * (1.0 - t * t) * _sigmoid(z))


def _log_softmax(z: np.ndarray, y: np.ndarray, g: np.ndarray) -> np.ndarray:
    # y = z - logsumexp(z): the Jacobian is I - softmax(z) 1ᵀ along the last axis.
    return g - np.exp(y) * g.sum(axis=-1, keepdims=True)


ACTIVATION_VJPS: dict[str, ActivationVjp] = {
    "tanh": lambda z, y, g: g * (1.0 - y * y),
    "sigmoid": lambda z, y, g: g * y * (1.0 - y),
    "hard_sigmoid_keras3": lambda z, y, g: g * _inside(z, -3.0, 3.0) / 6.0,
    "hard_sigmoid_keras2": lambda z, y, g: g * _inside(z, -2.5, 2.5) * 0.2,
    "relu": lambda z, y, g: g * (z > 0),
    "linear": lambda z, y, g: g,
    "softsign": lambda z, y, g: g / (1.0 + np.abs(z)) ** 2,
    "softplus": lambda z, y, g: g * _sigmoid(z),
    "elu": lambda z, y, g: g * np.where(z > 0, 1.0, np.exp(np.minimum(z, 0))),
    "selu": lambda z, y, g: (
        g * _SELU_SCALE * np.where(z > 0, 1.0, _SELU_ALPHA * np.exp(np.minimum(z, 0)))
    ),
    "silu": lambda z, y, g: g * (_sigmoid(z) * (1.0 + z * (1.0 - _sigmoid(z)))),
    "exponential": lambda z, y, g: g * y,
    "relu6": lambda z, y, g: g * _inside(z, 0.0, 6.0),
    "leaky_relu": lambda z, y, g: np.where(z > 0, g, 0.2 * g),
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "hard_silu": lambda z, y, g: (
        g * (np.clip(z / 6.0 + 0.5, 0.0, 1.0) + z * _inside(z, -3.0, 3.0) / 6.0)
    ),
    "mish": _mish,
    "hard_tanh": lambda z, y, g: g * _inside(z, -1.0, 1.0),
    "log_sigmoid": lambda z, y, g: g * _sigmoid(-z),
    "celu": lambda z, y, g: g * np.where(z > 0, 1.0, np.exp(np.minimum(z, 0))),
    "tanh_shrink": lambda z, y, g: g * np.tanh(z) ** 2,
    "soft_shrink": lambda z, y, g: g * (np.abs(z) > 0.5),
    "hard_shrink": lambda z, y, g: g * (np.abs(z) > 0.5),
    "squareplus": lambda z, y, g: g * 0.5 * (1.0 + z / np.sqrt(z * z + 4.0)),
    "log_softmax": _log_softmax,
}


def activation_vjp(name: str, field: str = "activation") -> ActivationVjp:
    """The vector-Jacobian product of a canonical activation, refusing one without it.

    Args:
        name: the canonical activation name.
        field: the option it was given as, for the error message.

    Example:
        >>> vjp = activation_vjp("tanh")
        >>> z = np.array([0.0, 1.0])
        >>> vjp(z, np.tanh(z), np.ones(2)).round(4).tolist()
        [1.0, 0.42]
    """
    check_activation(name, field)
    if name not in ACTIVATION_VJPS:
        raise UnsupportedFeatureError(
            f"{field}={name!r}: the gradient reference has no derivative for it; "
            f"it differentiates {sorted(ACTIVATION_VJPS)}"
        )
    return ACTIVATION_VJPS[name]


__all__ = ["ACTIVATION_VJPS", "ActivationVjp", "activation_vjp"]
