"""What Keras 2 files mean where Keras 3 would read them differently.

Rules of this module:

- Names are read in the version of the file: ``"hard_sigmoid"`` is ``clip(0.2·x + 0.5)``
  (``hard_sigmoid_keras2``) in a file saved by Keras 2 or tf_keras, and ``clip(x/6 + 0.5)``
  (``hard_sigmoid_keras3``) in one saved by Keras 3.
- ``CuDNNLSTM`` and ``CuDNNGRU`` weights are rearranged into the canonical layout exactly
  (the same data, moved; the two bias halves kept as the canonical split bias). The cuDNN
  input kernel stores each gate's ``(units, input)`` matrix flattened in C order into an
  ``(input, units)`` block; its recurrent kernel stores each gate's matrix transposed.
- A GRU configuration without ``reset_after`` comes from a Keras that predates the option
  and computed the reset gate before the recurrent product (``reset_after=False``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..activations import ACTIVATIONS, KERAS_NAMED
from ..canonical import DirectionWeights
from ..errors import UnsupportedFeatureError

# Keras activation names -> canonical names, for names that mean one function everywhere.
_SAME_EVERYWHERE = {
    **{name: name for name in KERAS_NAMED},
    "swish": "silu",
    "hard_swish": "hard_silu",
    "softmax": "softmax",
}
# The functions this package registers with Keras 3: Keras 2's hard sigmoid, and GELU's
# tanh approximation (Keras names no function for gelu(approximate=True)).
_REGISTERED = {
    "xframe_bilstm>hard_sigmoid_keras2": "hard_sigmoid_keras2",
    "xframe_bilstm>gelu_tanh": "gelu_tanh",
}


def keras_major(version: object) -> int:
    """The major Keras version of a ``keras_version`` string (3 when unknown).

    Example:
        >>> keras_major("2.21.0"), keras_major(b"3.15.1"), keras_major(None)
        (2, 3, 3)
    """
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    if isinstance(version, str) and version.split(".")[0].isdigit():
        return int(version.split(".")[0])
    return 3


def activation_name(value: Any, *, major: int, where: str) -> str:
    """The canonical name of an activation as a Keras configuration stores it.

    Accepts a name, ``None`` (linear), or a serialized function (a dict whose ``config`` is
    the name). ``"hard_sigmoid"`` is read by the file's Keras version (see module rules).

    Example:
        >>> activation_name("hard_sigmoid", major=2, where="layer 'lstm'")
        'hard_sigmoid_keras2'
        >>> activation_name({"class_name": "function", "config": "tanh"}, major=3, where="")
        'tanh'
    """
    name = value
    if isinstance(value, dict):
        name = value.get("config")
        if isinstance(name, dict):  # e.g. {"config": {"name": ...}}
            name = name.get("name")
    if name is None:
        return "linear"
    if not isinstance(name, str):
        raise UnsupportedFeatureError(f"{where}: activation {value!r} is not a name we can read")
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name == "hard_sigmoid":
        return "hard_sigmoid_keras2" if major < 3 else "hard_sigmoid_keras3"
    if name in _SAME_EVERYWHERE:
        return _SAME_EVERYWHERE[name]
    supported = sorted({*_SAME_EVERYWHERE, "hard_sigmoid"})
    raise UnsupportedFeatureError(
        f"{where}: activation {name!r} is not supported; supported: {supported}"
    )


def recurrent_activation(value: Any, *, major: int, where: str) -> str:
    """Like :func:`activation_name`, limited to what a recurrent cell can compute."""
    name = activation_name(value, major=major, where=where)
    if name not in ACTIVATIONS:
        raise UnsupportedFeatureError(
            f"{where}: activation {name!r} cannot run inside a recurrent cell; supported: "
            f"{sorted(ACTIVATIONS)}"
        )
    return name


def _per_gate(array: np.ndarray, gates: int, function: Any) -> np.ndarray:
    return np.concatenate([function(block) for block in np.split(array, gates, axis=1)], axis=1)


def cudnn_direction(
    kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray, *, gates: int
) -> DirectionWeights:
    """Canonical weights of one ``CuDNNLSTM`` (4 gates) or ``CuDNNGRU`` (3 gates) layer.

    ``bias`` is cuDNN's ``(2·G·H,)``: input-side gates, then recurrent-side gates, both in
    Keras's gate order. It becomes the canonical split bias ``(2, G·H)``; for a GRU that is
    exactly ``GRU(reset_after=True)``'s bias.

    Example:
        >>> k = np.arange(8.0).reshape(2, 4)          # input 2, units 1, 4 gates
        >>> weights = cudnn_direction(k, np.ones((1, 4)), np.zeros(8), gates=4)
        >>> weights.kernel.tolist(), weights.bias.shape
        ([[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]], (2, 4))
    """
    units = recurrent_kernel.shape[0]
    input_size = kernel.shape[0]

    def from_cudnn_input(block: np.ndarray) -> np.ndarray:
        # The gate's (units, input) matrix was stored flattened in C order: read it back,
        # then transpose to Keras's (input, units).
        return block.reshape(-1).reshape(units, input_size).T

    return DirectionWeights(
        _per_gate(kernel, gates, from_cudnn_input),
        _per_gate(recurrent_kernel, gates, lambda block: block.T),
        bias.reshape(2, gates * units),
    )


__all__ = ["activation_name", "cudnn_direction", "keras_major", "recurrent_activation"]
