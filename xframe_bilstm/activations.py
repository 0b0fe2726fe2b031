"""Activation functions by canonical name, implemented in numpy for the reference.

Names are exact: ``hard_sigmoid`` means different functions in Keras 2 (``0.2x + 0.5``)
and Keras 3 (``x/6 + 0.5``, both clipped to [0, 1]), so neither is called plain
``hard_sigmoid`` here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .errors import UnsupportedFeatureError

_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Written through tanh so large |x| neither overflows exp nor loses precision.
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


_erf = np.vectorize(math.erf, otypes=[float])


def _gelu(x: np.ndarray) -> np.ndarray:
    return (0.5 * x * (1.0 + _erf(np.asarray(x, np.float64) / math.sqrt(2.0)))).astype(x.dtype)


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


NUMPY_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "hard_sigmoid_keras3": lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "hard_sigmoid_keras2": lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0),
    "relu": lambda x: np.maximum(x, 0),
    "linear": lambda x: x,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "elu": _elu,
    "selu": lambda x: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0))),
    "silu": lambda x: x * _sigmoid(x),
    "exponential": np.exp,
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),  # Keras's default slope
    "gelu": _gelu,  # exact, with erf (Keras's default, approximate=False)
    "gelu_tanh": _gelu_tanh,  # Keras's approximate=True, torch's approximate="tanh"
    "hard_silu": lambda x: x * np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "mish": lambda x: x * np.tanh(np.logaddexp(0.0, x)),
    "hard_tanh": lambda x: np.clip(x, -1.0, 1.0),
    "log_sigmoid": lambda x: -np.logaddexp(0.0, -x),
    "celu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),  # alpha=1: elu
    "tanh_shrink": lambda x: x - np.tanh(x),
    "soft_shrink": lambda x: np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0.0)),
    "hard_shrink": lambda x: np.where(np.abs(x) > 0.5, x, 0.0),
    "squareplus": lambda x: (x + np.sqrt(x * x + 4.0)) / 2.0,
    "log_softmax": _log_softmax,  # over the last axis
}

ACTIVATIONS = frozenset(NUMPY_ACTIVATIONS)
# The canonical names Keras gives its own built-in function by the same name (Keras's
# hard_sigmoid differs between versions, and it names no function for gelu's tanh form).
KERAS_NAMED = tuple(
    name
    for name in NUMPY_ACTIVATIONS
    if name not in ("hard_sigmoid_keras3", "hard_sigmoid_keras2", "gelu_tanh")
)


def check_activation(name: str, field: str) -> str:
    """Return ``name`` if it is a known canonical activation, else raise naming ``field``.

    Example:
        >>> check_activation("tanh", "activation")
        'tanh'
    """
    if name not in NUMPY_ACTIVATIONS:
        raise UnsupportedFeatureError(
            f"{field}={name!r} is not a supported activation; supported: {sorted(ACTIVATIONS)}"
        )
    return name


def numpy_activation(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The numpy function of a canonical activation name.

    Example:
        >>> float(numpy_activation("hard_sigmoid_keras2")(np.array(2.0)))
        0.9
    """
    return NUMPY_ACTIVATIONS[check_activation(name, "activation")]
