"""A tensor the module holds, given the batch axis in a captured ``forward``.

Learned initial states (``self.h0.expand(-1, x.size(0), -1)``, ``self.h0.repeat(1, B, 1)``),
a learned query (``self.query.expand(B, -1, -1)``) and a class token prepended to the steps
are a held tensor repeated over the batch. Such an operation reads held tensors only, and
its result has the batch axis in both captures, first or, for torch's stacked states,
second (a time-major tensor, :mod:`.capture_time_major`). It is read as a ``broadcast``
record: one value, every row alike, repeated over the batch of the model's input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._imports import require
from ..graph import LayerRecord
from .capture_tensors import Names, Tensors, Unsupported, computed_on_held


def broadcast_held(node: Any, tensors: Tensors, names: Names, batch_of: str) -> LayerRecord | None:
    """The ``broadcast`` record of ``node``, reading the tensor ``batch_of`` for its batch
    size; None where ``node`` reads anything but held tensors or gives no batch axis.

    Raises:
        Unsupported: a held tensor given the batch axis whose rows differ.
    """
    torch = require("torch")
    given = node.all_input_nodes
    shapes = tensors.shapes.get(str(node.name))
    value = node.meta.get("val")
    if (
        node.op != "call_function"
        or not given
        or not all(tensors.holds(n) for n in given)
        or not isinstance(value, torch.Tensor)
        or shapes is None
        or shapes[1] is None
        or (shapes[0][:1], shapes[1][:1]) != ((tensors.batches[0],), (tensors.batches[1],))
    ):
        return None
    computed = computed_on_held(node, tensors).detach().cpu().numpy()
    rows = np.moveaxis(computed, 1 if tensors.is_swapped(node) else 0, 0)
    if not all(np.array_equal(row, rows[0]) for row in rows[1:]):
        raise Unsupported("gives a tensor the module holds a batch axis whose rows differ")
    options = {"shape": tuple(rows[0].shape)}
    return LayerRecord(
        names(node.name), "broadcast", "BatchBroadcast", (batch_of,), options, {"value": rows[0]}
    )


__all__ = ["broadcast_held"]
