"""Positions counted in a captured ``forward`` and looked up in a table: a learned
positional embedding, ``self.pos(torch.arange(x.size(1)))`` (or ``F.embedding`` of it,
``unsqueeze``-d or ``expand``-ed over the batch first), is the table's first T rows, read
as the ``broadcast`` record of a table cut to the steps (as :mod:`.capture_broadcast`
reads ``self.pe[:, :T]``).

``torch.arange`` from 0 by 1 to a length that follows the input's is kept with the nearest
tensor of that length (:func:`~.capture_expand.tensor_of_length`), and so are its moves;
a lookup of it is the record. Anything else reading it is refused, naming the operation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..graph import LayerRecord
from .capture_expand import tensor_of_length
from .capture_tensors import Tensors, Unsupported, op_name

_MOVES = {"aten.unsqueeze", "aten.view", "aten.reshape", "aten.expand", "aten._to_copy"}


def read_positions(node: Any, tensors: Tensors) -> bool:
    """Whether ``node`` counts the steps' positions, or moves such a count; kept in
    ``tensors.positions`` with the tensor whose steps it counts."""
    given = node.all_input_nodes
    if op_name(node) in _MOVES and given and given[0].name in tensors.positions:
        tensors.positions[node.name] = tensors.positions[given[0].name]
        return True
    args = list(node.args)
    if op_name(node) != "aten.arange" or not args:
        return False
    start, step = (0, 1) if len(args) == 1 else (args[0], [*args, 1][2])  # (start, end, step)
    first, second = tensors.shapes.get(node.name, ((), None))
    if start != 0 or step != 1 or second is None or first == second:
        return False
    out = tuple((batch, shape[0]) for batch, shape in zip(tensors.batches, (first, second)))
    like = tensor_of_length(node, tensors, [1], out)
    if like is None:
        return False
    tensors.positions[node.name] = like
    return True


def positions_lookup(
    name: str, table: np.ndarray, positions: Any, output: Any, tensors: Tensors
) -> LayerRecord | None:
    """The ``broadcast`` record of looking ``positions`` up in ``table`` (``output``: the
    lookup's node, given the batch axis torch broadcasts it over); None where
    ``positions`` counts no steps, or counts them on another axis than the last."""
    like = tensors.positions.get(positions.name)
    first, second = tensors.shapes.get(positions.name, ((), None))
    if like is None or second is None:
        return None
    pairs = zip((first, second), tensors.batches)
    if any(size not in (1, batch) for shape, batch in pairs for size in shape[:-1]):
        return None  # (T,), (1, T) or (B, T): the steps counted on the last axis
    steps = [shape[1] for shape in tensors.shapes[like.name] if shape is not None]
    out = [(batch, size, table.shape[1]) for batch, size in zip(tensors.batches, steps)]
    tensors.shapes[output.name] = (out[0], out[1])
    options = {"shape": tuple(table.shape), "steps_of": 1}
    inputs = (tensors.name(like),)
    return LayerRecord(name, "broadcast", "BatchBroadcast", inputs, options, {"value": table})


def looked_up(
    name: str, embedding: Any, positions: Any, output: Any, tensors: Tensors, records: list
) -> None:
    """Read a call of ``embedding`` (an ``nn.Embedding``) on ``positions`` into ``records``.

    Raises:
        Unsupported: positions counted on another axis than the last.
    """
    table = embedding.weight.detach().cpu().numpy()
    record = positions_lookup(name, table, positions, output, tensors)
    if record is None:
        raise Unsupported(f"looks up positions in {name!r} other than along the steps")
    records.append(record)
    tensors.names[output] = record.name


__all__ = ["looked_up", "positions_lookup", "read_positions"]
