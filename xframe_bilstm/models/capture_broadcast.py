"""A tensor the module holds, given the batch axis in a captured ``forward``.

Learned initial states (``self.h0.expand(-1, x.size(0), -1)``, ``self.h0.repeat(1, B, 1)``),
a learned query (``self.query.expand(B, -1, -1)``) and a class token prepended to the steps
are a held tensor repeated over the batch. Such an operation reads held tensors only, and
its result has the batch axis in both captures, first or, for torch's stacked states,
second (a time-major tensor, :mod:`.capture_time_major`). It is read as a ``broadcast``
record: one value, every row alike, repeated over the batch of the model's input.

A table the module holds cut to the steps of the input (a sinusoidal positional encoding,
``self.pe[:, :x.size(1)]``: a slice of a held tensor from 0 whose end follows the input's
length) is a ``broadcast`` record too, cut at any length to the steps of the nearest tensor
of that length (:func:`~.capture_expand.tensor_of_length`), with the batch axis torch would
broadcast it over (second for a time-major table, (L, 1, D), as PyTorch's Transformer
tutorial holds it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._imports import require
from ..graph import LayerRecord
from .capture_expand import tensor_of_length
from .capture_tensors import Names, Tensors, Unsupported, computed_on_held, op_name


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


def held_steps(node: Any, tensors: Tensors, names: Names) -> LayerRecord | None:
    """The ``broadcast`` record of a held table cut to the input's steps (``node``:
    ``self.pe[:, :T]``); None for any other node.

    Raises:
        Unsupported: a cut that starts elsewhere than 0, skips steps, or follows the length
            of no tensor computed before it.
    """
    args = list(node.args)
    if op_name(node) != "aten.slice" or not args or not tensors.holds(args[0]):
        return None
    first, second = tensors.shapes.get(str(node.name), ((), None))
    if second is None or len(args) < 4:
        return None
    table, dim = tensors.value(args[0]), int(args[1]) % len(first)
    assert table is not None
    if first[dim] == second[dim]:
        return None  # the same cut at both lengths: folded as a held tensor
    step = args[4] if len(args) > 4 else 1
    if args[2] not in (None, 0) or step != 1 or table.shape[:dim] != (1,) * dim:
        raise Unsupported(
            "cuts a tensor it holds to the input's length other than as table[:, :T] from 0"
        )
    # (L, 1, D) cut on its first axis: time-major, as PyTorch's Transformer tutorial has it
    time_major = dim == 0 and table.ndim >= 3 and table.shape[1] == 1
    value = table[:, 0] if time_major else table.reshape(table.shape[dim:])
    out = tuple(
        (b, size[dim], *value.shape[1:]) for b, size in zip(tensors.batches, (first, second))
    )
    like = tensor_of_length(node, tensors, [1], out)
    if like is None:
        raise Unsupported("cuts a tensor it holds to a length no tensor computed before it has")
    tensors.shapes[str(node.name)] = (out[0], out[1])  # the batch axis torch broadcasts
    if time_major:
        tensors.swapped.add(str(node.name))
    options = {"shape": tuple(value.shape), "steps_of": 1}
    return LayerRecord(
        names(node.name),
        "broadcast",
        "BatchBroadcast",
        (tensors.name(like),),
        options,
        {"value": value},
    )


__all__ = ["broadcast_held", "held_steps"]
