"""Keras recurrent variables created from the weights themselves, not zero-filled then set.

Building a layer with its configured initializers and then assigning each weight holds two
buffers per variable: TensorFlow keeps the memory of the replaced one resident, so a large
conversion peaks well above the size of its weights. Lending each cell an initializer that
returns the weight creates every kernel holding its value from the start; the configured
initializers are put back right after building, so the layer's ``get_config`` and a saved
``.keras`` file are those of an ordinary layer and never embed the weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..._imports import require
from ...canonical import RecurrentLayer
from ...copies import contiguous_copy
from ...errors import WeightShapeError

# The cell attributes lent an initializer, with the canonical weight each one creates.
LENT = (("kernel_initializer", "kernel"), ("recurrent_initializer", "recurrent_kernel"))


class _FromWeight:
    """An initializer giving one canonical weight (in Keras's orientation), used once."""

    def __init__(self, array: np.ndarray, where: str) -> None:
        self.array: np.ndarray | None = array
        self.where = where

    def __call__(self, shape: Any, dtype: Any = None, **_: Any) -> Any:
        array = self.array
        if array is None:
            raise RuntimeError(f"{self.where}: the weight was already used to create a variable")
        if tuple(shape) != array.shape:
            raise WeightShapeError(
                f"{self.where} has shape {tuple(shape)}; the canonical weight has shape "
                f"{array.shape}"
            )
        self.array = None  # the variable holds it from here on
        # The conversion Variable.assign makes, so the values are those assigning gives.
        return require("keras").ops.convert_to_tensor(contiguous_copy(array), dtype=dtype)


def halves(layer: RecurrentLayer, keras_layer: Any) -> tuple[Any, ...]:
    """The Keras recurrent layers holding ``layer``'s directions, in canonical order."""
    if layer.direction == "bidirectional":
        return (keras_layer.forward_layer, keras_layer.backward_layer)
    return (keras_layer,)


def lend_weights(layer: RecurrentLayer, keras_layer: Any) -> Callable[[], bool]:
    """Give an unbuilt Keras layer's cells initializers that create its kernels from ``layer``.

    Args:
        layer: the canonical layer whose kernels and recurrent kernels the cells receive.
        keras_layer: its Keras layer (or ``Bidirectional``), constructed but not built.

    Returns:
        A function that puts the cells' configured initializers back, to call once the layer
        is built (or failed to build); it returns whether every lent weight created its
        variable (when not, the caller assigns the weights).
    """
    lent: list[tuple[Any, str, Any, _FromWeight]] = []
    for half, weights in zip(halves(layer, keras_layer), layer.weights, strict=True):
        for attribute, key in LENT:
            initializer = _FromWeight(getattr(weights, key), f"layer {half.name!r}: its {key}")
            lent.append((half.cell, attribute, getattr(half.cell, attribute), initializer))
            setattr(half.cell, attribute, initializer)

    def restore() -> bool:
        for cell, attribute, configured, _ in lent:
            setattr(cell, attribute, configured)
        return all(initializer.array is None for *_, initializer in lent)

    return restore
