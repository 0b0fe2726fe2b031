"""The tensor operations of a captured ``forward`` rebuilt in Keras 3.

No Keras layer sums over time, slices one step, adds a constant or a tensor it holds,
multiplies two batches of matrices, divides two tensors, writes a constant where a
comparison holds, repeats a tensor it holds over the batch, repeats each step in place,
broadcasts a tensor over another's steps, reads a tensor at given positions or puts time
before the batch, so these are small layers of this package, registered as
``xframe_bilstm>Reduce``, ``>Slice``, ``>ScalarOp``, ``>MatMul``, ``>Divide``,
``>WeightOp``, ``>BatchBroadcast``, ``>Elementwise``, ``>Repeat``, ``>Expand``,
``>Gather``, ``>TimeFirst`` and ``>Where``: a saved model that holds them loads where this
package is imported. Each computes what :mod:`xframe_bilstm.reference.tensor_ops`
(and :mod:`xframe_bilstm.reference.where`, :mod:`xframe_bilstm.reference.graph`) computes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from ..._imports import require
from ...errors import UnsupportedFeatureError
from ...graph import LayerRecord
from ...reference.tensor_ops import KINDS, expanded_shape, held_rows, scalar_op, slice_index
from ...reference.where import COMPARISONS, evaluate, expression

# The kinds these layers compute: the reference's tensor operations, products, masks and
# held tensors given the batch axis.
LAYER_KINDS = (
    *KINDS,
    *("matmul", "where", "expand", "gather", "slice_to", "broadcast", "time_first"),
    "merged_rows",
)


@functools.cache
def tensor_op_classes() -> dict[str, Any]:
    """The Keras layer class of each kind, defined and registered on first use."""
    keras = require("keras")
    register = keras.saving.register_keras_serializable(package="xframe_bilstm")

    class _OptionsLayer(keras.layers.Layer):  # type: ignore[name-defined]
        def __init__(self, options: dict[str, Any], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.options = dict(options)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "options": dict(self.options)}

    @register
    class Reduce(_OptionsLayer):
        """The sum, mean, maximum, minimum, vector norm, variance or standard deviation over
        ``axes`` (counted with the batch axis)."""

        def call(self, x: Any) -> Any:
            op, ops = self.options["op"], keras.ops
            axes = tuple(int(axis) for axis in self.options["axes"])
            keepdims = bool(self.options["keepdims"])
            if op == "l1_norm":
                return ops.sum(ops.abs(x), axis=axes, keepdims=keepdims)
            if op == "l2_norm":  # over several axes: the flattened vector's, not a matrix norm
                return ops.sqrt(ops.sum(ops.square(x), axis=axes, keepdims=keepdims))
            if op in ("var", "std"):  # Keras's own divide by the count, without correction
                centred = x - ops.mean(x, axis=axes, keepdims=True)
                count = ops.cast(ops.prod(ops.take(ops.shape(x), axes)), x.dtype)
                spread = ops.sum(ops.square(centred), axis=axes, keepdims=keepdims) / (
                    count - float(self.options["correction"])
                )
                return ops.sqrt(spread) if op == "std" else spread
            return getattr(ops, op)(x, axis=axes, keepdims=keepdims)

    @register
    class Slice(_OptionsLayer):
        """``x[..., start:stop:step, ...]`` on one axis, or one position of it."""

        def call(self, x: Any) -> Any:
            return x[slice_index(self.options)]

    @register
    class ScalarOp(_OptionsLayer):
        """``x op constant``, or ``constant op x`` where ``reverse``; keeps the mask."""

        def __init__(self, options: dict[str, Any], **kwargs: Any) -> None:
            super().__init__(options, **kwargs)
            self.supports_masking = True

        def call(self, x: Any) -> Any:
            options = self.options
            constant = keras.ops.cast(float(options["constant"]), x.dtype)
            extremes = (keras.ops.maximum, keras.ops.minimum)
            return scalar_op(str(options["op"]), x, constant, bool(options["reverse"]), extremes)

    @register
    class WeightOp(_OptionsLayer):
        """``x op value`` (or ``value op x``) with a weight of its own, of ``shape``,
        broadcast from the right; keeps the mask."""

        def __init__(self, options: dict[str, Any], **kwargs: Any) -> None:
            super().__init__(options, **kwargs)
            self.supports_masking = True
            shape = tuple(int(size) for size in options["shape"])
            self.value = self.add_weight(shape=shape, initializer="zeros", name="value")

        def call(self, x: Any) -> Any:
            value = keras.ops.cast(self.value, x.dtype)
            return scalar_op(str(self.options["op"]), x, value, bool(self.options["reverse"]))

    @register
    class BatchBroadcast(_OptionsLayer):
        """A weight of its own, of ``shape``, repeated over the batch of its input (a torch
        ``self.h0.expand(-1, B, -1)``: a learned initial state or class token), or its
        first rows, as many as the input's axis ``steps_of`` has (a positional table).
        Only the input's sizes are read, so token ids serve as well as floats; no mask
        follows."""

        def __init__(self, options: dict[str, Any], **kwargs: Any) -> None:
            super().__init__(options, **kwargs)
            shape = tuple(int(size) for size in options["shape"])
            self.value = self.add_weight(shape=shape, initializer="zeros", name="value")

        def call(self, x: Any) -> Any:
            rows = held_rows(self.value, self.options, keras.ops.shape(x))
            value = keras.ops.expand_dims(keras.ops.cast(rows, self.compute_dtype), 0)
            shape = keras.ops.shape(value)
            return keras.ops.broadcast_to(value, (keras.ops.shape(x)[0], *shape[1:]))

        def compute_mask(self, inputs: Any, previous_mask: Any = None) -> None:
            return None  # defined, so that a masked input drops its mask without a warning

    @register
    class Repeat(_OptionsLayer):
        """Each position on ``axis`` repeated ``repeats`` times in a row (a torch
        ``x.repeat_interleave(2, dim=1)``); no mask follows."""

        def call(self, x: Any) -> Any:
            repeats, axis = int(self.options["repeats"]), int(self.options["axis"])
            return keras.ops.repeat(x, repeats, axis=axis)

        def compute_mask(self, inputs: Any, previous_mask: Any = None) -> None:
            return None

    @register
    class Expand(_OptionsLayer):
        """Its first input broadcast to the ``sizes`` of
        :func:`~xframe_bilstm.reference.tensor_ops.expanded_shape`, None taking the size of
        its second input; no mask follows."""

        def call(self, inputs: list[Any]) -> Any:
            x = inputs[0]
            like_shape = keras.ops.shape(inputs[1]) if len(inputs) > 1 else ()
            shape = expanded_shape(list(self.options["sizes"]), keras.ops.shape(x), like_shape)
            return keras.ops.broadcast_to(x, shape)

        def compute_mask(self, inputs: Any, previous_mask: Any = None) -> None:
            return None

    @register
    class Gather(_OptionsLayer):
        """Its first input at the positions its second gives on ``axis``
        (``torch.gather``), the positions cast to integers; no mask follows."""

        def call(self, inputs: list[Any]) -> Any:
            index = keras.ops.cast(inputs[1], "int32")
            return keras.ops.take_along_axis(inputs[0], index, axis=int(self.options["axis"]))

        def compute_mask(self, inputs: Any, previous_mask: Any = None) -> None:
            return None

    @register
    class SliceTo(_OptionsLayer):
        """Its first input's first positions on ``axis``, as many as its second has
        there; no mask follows."""

        def call(self, inputs: list[Any]) -> Any:
            axis = int(self.options["axis"])
            count = keras.ops.shape(inputs[1])[axis]
            return keras.ops.take(inputs[0], keras.ops.arange(count), axis=axis)

        def compute_mask(self, inputs: Any, previous_mask: Any = None) -> None:
            return None

    @register
    class TimeFirst(keras.layers.Layer):  # type: ignore[name-defined]
        """Its input with axes 0 and 1 swapped: a result a torch ``forward`` returns
        time-major, (time, batch, ...) (a CTC model's), or an input it takes so, made
        batch-major. Keras calls such a model as any other; ``predict`` in several batches
        would split and join them on axis 0, so call it whole."""

        def call(self, x: Any) -> Any:
            return keras.ops.swapaxes(x, 0, 1)

        def compute_mask(self, inputs: Any, previous_mask: Any = None) -> None:
            return None

    @register
    class MergedRows(_OptionsLayer):
        """Its (batch, time, ...) input with those axes in one, step by step where option
        ``time_first`` (as a torch ``forward``'s ``out.view(-1, C)`` of time-major code),
        else row by row: a result as a loss over every step reads it. Call such a model on
        the whole batch: its first axis is no longer the batch."""

        def call(self, x: Any) -> Any:
            rows = keras.ops.swapaxes(x, 0, 1) if self.options["time_first"] else x
            return keras.ops.reshape(rows, (-1, *x.shape[2:]))

        def compute_mask(self, inputs: Any, previous_mask: Any = None) -> None:
            return None

    @register
    class Elementwise(_OptionsLayer):
        """One function (``abs``, ``log``...) on every element; keeps the mask."""

        def __init__(self, options: dict[str, Any], **kwargs: Any) -> None:
            super().__init__(options, **kwargs)
            self.supports_masking = True

        def call(self, x: Any) -> Any:
            return getattr(keras.ops, str(self.options["function"]))(x)

    @register
    class Divide(keras.layers.Subtract):  # type: ignore[name-defined]
        """``a / b``: the one elementwise operation of two tensors Keras has no merge layer
        for. Keras's merges check, broadcast and mask it as they do ``Subtract``."""

        def _merge_function(self, inputs: list[Any]) -> Any:
            return keras.ops.divide(inputs[0], inputs[1])

    @register
    class MatMul(_OptionsLayer):
        """``a @ b`` over the last two axes of its two inputs, each first transposed where
        said."""

        def call(self, inputs: list[Any]) -> Any:
            a, b = inputs
            if self.options["transpose_a"]:
                a = keras.ops.swapaxes(a, -1, -2)
            if self.options["transpose_b"]:
                b = keras.ops.swapaxes(b, -1, -2)
            return keras.ops.matmul(a, b)

    @register
    class Where(_OptionsLayer):
        """``fill`` where ``source`` (axes of size 1 inserted at ``axes``) compares to
        ``value`` as said, ``x`` elsewhere (``otherwise``, where given); inputs
        ``[x, source, ...]``. A ``condition`` option combines several comparisons
        (:mod:`xframe_bilstm.reference.where`)."""

        def call(self, inputs: list[Any]) -> Any:
            x = inputs[0]
            holds = evaluate(
                expression(self.options),
                lambda term, index: _compared(term, inputs[index]),
                lambda op, a, b: (
                    keras.ops.logical_and(a, b) if op == "and" else keras.ops.logical_or(a, b)
                ),
            )
            if "otherwise" in self.options:  # a mask as numbers, shaped as the condition
                fill = keras.ops.cast(float(self.options["fill"]), self.compute_dtype)
                otherwise = keras.ops.cast(float(self.options["otherwise"]), self.compute_dtype)
                return keras.ops.where(holds, fill, otherwise)
            fill = keras.ops.cast(float(self.options["fill"]), x.dtype)
            return keras.ops.where(holds, fill, x)

    def _compared(term: Mapping[str, Any], source: Any) -> Any:
        compared = keras.ops.cast(source, "float64")  # ids and floats compare alike
        for axis in sorted(int(axis) for axis in term["axes"]):
            compared = keras.ops.expand_dims(compared, axis)
        return COMPARISONS[str(term["compare"])](compared, float(term["value"]))

    return {
        "reduce": Reduce,
        "slice": Slice,
        "scalar_op": ScalarOp,
        "matmul": MatMul,
        "where": Where,
        "divide": Divide,
        "weight_op": WeightOp,
        "broadcast": BatchBroadcast,
        "elementwise": Elementwise,
        "repeat": Repeat,
        "expand": Expand,
        "gather": Gather,
        "slice_to": SliceTo,
        "time_first": TimeFirst,
        "merged_rows": MergedRows,
    }


def tensor_op_layer(record: LayerRecord, dtype: str) -> Any:
    """The Keras layer of a record of one of :data:`LAYER_KINDS`, not yet holding its
    weight (``weight_op``, ``broadcast``: set once built).

    Example:
        >>> import numpy as np
        >>> record = LayerRecord("total", "reduce", "sum", ("x",),
        ...                      {"op": "sum", "axes": (1,), "keepdims": False})
        >>> np.asarray(tensor_op_layer(record, "float32")(np.ones((1, 3, 2)))).tolist()
        [[3.0, 3.0]]
    """
    if record.kind not in LAYER_KINDS:
        raise UnsupportedFeatureError(f"layer {record.name!r}: no Keras layer for {record.kind!r}")
    layer_class = tensor_op_classes()[record.kind]
    if record.kind == "time_first":  # no options
        return layer_class(dtype=dtype, name=record.name)
    return layer_class(dict(record.options), dtype=dtype, name=record.name)


__all__ = ["LAYER_KINDS", "tensor_op_classes", "tensor_op_layer"]
