"""A ``broadcast`` record (a tensor the module holds, repeated over the batch) in a
whole-model export (:mod:`.graph_export`).

The value is an initializer of shape (1, *shape) in the graph's float type, ``Expand``-ed
to ``(B, *shape)``, B read from its input's ``Shape`` (and, for a positional table,
``Slice``-d to as many rows as the input's axis ``steps_of`` has): the input's values and
dtype are not read, so token ids serve as well as floats.
"""

from __future__ import annotations

import numpy as np

from ...graph import LayerRecord
from .builder import GraphBuilder

Emitted = tuple[str, str | None]  # a layer's output, and its (B, T) bool mask or None


def _broadcast(builder: GraphBuilder, record: LayerRecord, x: str, mask: str | None) -> Emitted:
    """``value`` repeated over ``x``'s batch; no mask after."""
    prefix, shape = record.name, tuple(int(size) for size in record.options["shape"])
    value = np.asarray(record.weights["value"], builder.float_dtype).reshape(1, *shape)
    held = builder.constant(f"{prefix}/value", value)
    x_shape = builder.one("Shape", [x], f"{prefix}/input_shape")
    # A one-element index keeps the axis: the batch size as a (1,) vector, ready to join.
    batch = builder.one("Gather", [x_shape, builder.ints("start0", [0])], f"{prefix}/batch")
    steps_of = record.options.get("steps_of")
    if steps_of is not None:  # the first rows, as many as the input's steps
        at = builder.ints(f"{prefix}/steps_of", [int(steps_of)])
        steps = builder.one("Gather", [x_shape, at], f"{prefix}/steps")
        cut = [builder.ints("start0", [0]), steps, builder.ints("axes1", [1])]
        held = builder.one("Slice", [held, *cut], f"{prefix}/rows")
    target = batch
    if shape:  # Expand broadcasts both ways: 1 keeps the value's size
        sizes = builder.ints(f"{prefix}/shape", [1] * len(shape))
        target = builder.one("Concat", [batch, sizes], f"{prefix}/target", axis=0)
    return builder.one("Expand", [held, target], prefix), None


# One-input kinds, as :mod:`.graph_export` calls its emitters.
EMITTERS = {"broadcast": _broadcast}

__all__ = ["EMITTERS"]
