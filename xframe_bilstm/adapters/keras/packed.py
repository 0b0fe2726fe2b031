"""A torch packed sequence rebuilt in Keras 3: ``lengths_mask``, ``end_mask`` and
``valid_steps`` records.

Keras masks by a layer's ``compute_mask``, and no Keras layer masks a tensor by per-row
lengths read from another input, nor ends a mask without changing its input, nor turns
per-row lengths into the valid steps as numbers, so these are three small layers of this
package, registered as ``xframe_bilstm>LengthsMask``, ``>EndMask`` and ``>ValidSteps``: a
saved model that holds them loads where this package is imported. The two mask layers
return a copy of their input, as Keras attaches a mask to the tensor object a layer returns:
returning the input itself would mask (or leave masked) every other reader of it.
"""

from __future__ import annotations

import functools
from typing import Any

from ..._imports import require
from ...errors import UnsupportedFeatureError
from ...graph import LayerRecord

LAYER_KINDS = ("lengths_mask", "end_mask", "valid_steps")


@functools.cache
def packed_classes() -> dict[str, Any]:
    """The Keras layer class of each kind, defined and registered on first use."""
    keras = require("keras")
    register = keras.saving.register_keras_serializable(package="xframe_bilstm")

    def valid(x: Any, lengths: Any) -> Any:
        """(batch, time) booleans, True where step ``t < lengths[b]``; ``x`` gives the
        batch and the steps (axis 1) alone."""
        # Steps counted from 1 along time: a cumulative sum, not an arange, as a symbolic
        # tensor (a functional model being built) has no time size to count to.
        first = x[(slice(None), slice(None), *(0,) * (len(x.shape) - 2))]
        steps = keras.ops.cumsum(keras.ops.ones_like(first, dtype="int32"), axis=1)
        # int32 or int64 lengths alike: a length never needs more than int32.
        lengths = keras.ops.cast(lengths, "int32")
        return keras.ops.less_equal(steps, keras.ops.expand_dims(lengths, 1))

    @register
    class LengthsMask(keras.layers.Layer):  # type: ignore[name-defined]
        """``x`` of inputs ``[x, lengths]``, masked where step ``t >= lengths[b]`` (a torch
        ``pack_padded_sequence``: right padding); a mask ``x`` had is replaced."""

        def call(self, inputs: list[Any]) -> Any:
            return keras.ops.copy(inputs[0])

        def compute_mask(self, inputs: list[Any], previous_mask: Any = None) -> Any:
            return valid(*inputs)

    @register
    class EndMask(keras.layers.Layer):  # type: ignore[name-defined]
        """Its input with no mask (a torch ``pad_packed_sequence``: nothing after it sees
        the padding)."""

        def call(self, x: Any) -> Any:
            return keras.ops.copy(x)

        def compute_mask(self, inputs: Any, previous_mask: Any = None) -> None:
            return None

    @register
    class ValidSteps(keras.layers.Layer):  # type: ignore[name-defined]
        """Of inputs ``[x, lengths]``, (batch, time) numbers in the layer's dtype: 1 where
        step ``t < lengths[b]``, 0 after (a torch ``arange(T) < lengths[:, None]`` made
        float); a tensor of its own, so no mask, whatever ``x`` had."""

        def call(self, inputs: list[Any]) -> Any:
            return keras.ops.cast(valid(*inputs), self.compute_dtype)

        def compute_mask(self, inputs: list[Any], previous_mask: Any = None) -> None:
            return None

    return {"lengths_mask": LengthsMask, "end_mask": EndMask, "valid_steps": ValidSteps}


def packed_layer(record: LayerRecord, dtype: str) -> Any:
    """The Keras layer of a record of one of :data:`LAYER_KINDS`.

    Example:
        >>> import numpy as np
        >>> layer = packed_layer(LayerRecord("ends", "end_mask", "EndMask", ("x",)), "float32")
        >>> np.asarray(layer(np.ones((1, 2, 1)))).tolist()
        [[[1.0], [1.0]]]
    """
    if record.kind not in LAYER_KINDS:
        raise UnsupportedFeatureError(f"layer {record.name!r}: no Keras layer for {record.kind!r}")
    return packed_classes()[record.kind](dtype=dtype, name=record.name)


__all__ = ["LAYER_KINDS", "packed_classes", "packed_layer"]
