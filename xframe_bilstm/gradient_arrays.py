"""One run's gradients, by the names the library gives weights, with each native name beside.

Every framework that differentiates returns a :class:`GradientArrays`: the gradients with
respect to the input, the initial states (when given) and every weight, keyed by canonical
name (``inputs``, ``initial_states[0]``, ``layers[0].forward.kernel``, ``.recurrent_kernel``,
``.bias``), in canonical orientation and gate order. A split bias (two rows, as PyTorch keeps
``bias_ih`` and ``bias_hh``) stays (2, G·H); ``native`` names what each array was in the
framework (two names for a split bias, one per row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .canonical import RecurrentStack

WEIGHT_FIELDS = ("kernel", "recurrent_kernel", "bias")


@dataclass(frozen=True)
class GradientArrays:
    """Gradients by canonical name, and the native name(s) of each where there are some."""

    arrays: dict[str, np.ndarray]
    native: dict[str, tuple[str, ...]] = field(default_factory=dict)


def weight_arrays(stack: RecurrentStack) -> dict[str, np.ndarray]:
    """A stack's weights by canonical name; a one-direction layer's are ``forward``.

    Example:
        >>> from xframe_bilstm import DirectionWeights, RecurrentLayer
        >>> w = DirectionWeights(np.zeros((3, 2)), np.zeros((2, 2)), np.zeros(2))
        >>> layer = RecurrentLayer("simple_rnn", 3, 2, (w,), "backward",
        ...                        recurrent_activation=None)
        >>> list(weight_arrays(RecurrentStack((layer,))))
        ['layers[0].forward.kernel', 'layers[0].forward.recurrent_kernel', 'layers[0].forward.bias']
    """
    named = {}
    for index, layer in enumerate(stack.layers):
        for side, weights in zip(("forward", "backward"), layer.weights):
            for name in WEIGHT_FIELDS:
                value = getattr(weights, name)
                if value is not None:
                    named[f"layers[{index}].{side}.{name}"] = np.asarray(value)
    return named


def gradient_arrays(
    inputs: np.ndarray,
    states: Sequence[np.ndarray] | None,
    weights: dict[str, np.ndarray],
    native: dict[str, tuple[str, ...]] | None = None,
) -> GradientArrays:
    """The named gradients of one run, as float64 arrays (``states`` None: none given)."""
    arrays = {"inputs": np.asarray(inputs, np.float64)}
    for index, state in enumerate(states or ()):
        arrays[f"initial_states[{index}]"] = np.asarray(state, np.float64)
    arrays.update({name: np.asarray(value, np.float64) for name, value in weights.items()})
    return GradientArrays(arrays, dict(native or {}))


def native_names(
    markers: RecurrentStack, parameters: Sequence[str], prefix: str
) -> dict[str, tuple[str, ...]]:
    """Which native parameter each canonical weight was read from.

    ``markers`` is the framework's model read back after its parameter ``i`` was filled with
    the value ``i + 1``: each canonical array (each row of a split bias) then holds the
    number of the parameter it came from, whatever the reading reordered or transposed.
    """
    named: dict[str, tuple[str, ...]] = {}
    for name, array in weight_arrays(markers).items():
        rows = array if name.endswith(".bias") and array.ndim == 2 else array[None]
        found = []
        for row in rows:
            index = round(float(np.asarray(row, np.float64).flat[0])) - 1
            if 0 <= index < len(parameters):
                found.append(f"{prefix} {parameters[index]}")
        if found:
            named[name] = tuple(found)
    return named


__all__ = ["GradientArrays", "gradient_arrays", "native_names", "weight_arrays"]
