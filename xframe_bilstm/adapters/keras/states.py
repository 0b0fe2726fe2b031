"""The states stateful Keras layers carry between calls: their batch size, copies, reset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..._imports import require


def _recurrent_members(obj: Any) -> list[Any]:
    """The plain recurrent layers inside ``obj``: itself, a Bidirectional's halves, a stack's."""
    keras = require("keras")
    if isinstance(obj, keras.Sequential):
        return [member for layer in obj.layers for member in _recurrent_members(layer)]
    if isinstance(obj, keras.layers.Bidirectional):
        return [obj.forward_layer, obj.backward_layer]
    return [obj] if isinstance(obj, keras.layers.RNN) else []


def _state_variables(obj: Any) -> list[Any]:
    return [
        state
        for layer in _recurrent_members(obj)
        if layer.stateful and getattr(layer, "states", None) is not None
        for state in layer.states
    ]


def fixed_batch_size(obj: Any) -> int | None:
    """The batch size a stateful layer was built for, or None for a stateless one."""
    states = _state_variables(obj)
    return int(states[0].shape[0]) if states else None


def snapshot_states(obj: Any) -> list[np.ndarray]:
    """Copies of the states a stateful layer carries between calls (empty if stateless)."""
    return [np.array(state.numpy()) for state in _state_variables(obj)]


def restore_states(obj: Any, snapshot: Sequence[np.ndarray]) -> None:
    """Put back states taken by :func:`snapshot_states`, e.g. after a verification run."""
    for state, value in zip(_state_variables(obj), snapshot, strict=True):
        state.assign(value)


def reset_keras_states(obj: Any) -> None:
    """Reset every stateful layer in ``obj`` to zero states, as Keras's ``reset_states``."""
    for layer in _recurrent_members(obj):
        if layer.stateful:
            layer.reset_states()
