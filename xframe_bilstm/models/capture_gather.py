"""``torch.gather`` in a captured ``forward``, as a ``gather`` record: each row's last valid
step read at its position (``out.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1,
H))``), or any tensor read at positions another tensor computes.

The positions must have the data's shape but on the gathered axis (torch allows them
smaller on the other axes: a block, refused by name), in both captures; they are computed
like any tensor of the graph (a count of valid ids is a sum of numbers), and each runner
casts them to integers.
"""

from __future__ import annotations

from typing import Any

from ..graph import LayerRecord
from .capture_tensors import Tensors, Unsupported, axis_of


def gather_records(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    """The ``gather`` record of an ``aten.gather`` node."""
    x, dim, index = args[0], int(args[1]), args[2]
    axis = axis_of(tensors, x, dim, "gathers")
    if tensors.is_swapped(x) or tensors.is_merged(x):
        raise Unsupported("gathers from a tensor whose batch axis is not alone first")
    for data, positions in zip(tensors.shapes[x.name], tensors.shapes[index.name]):
        if data is None or positions is None:
            continue
        others = [i for i in range(len(data)) if i != axis]
        if len(positions) != len(data) or any(positions[i] != data[i] for i in others):
            raise Unsupported(
                f"gathers positions of shape {tuple(positions)} from a tensor of shape "
                f"{tuple(data)}; give them the tensor's shape but on dim={dim}"
            )
    inputs = (tensors.name(x), tensors.name(index))
    return [LayerRecord(name, "gather", "gather", inputs, {"axis": axis})]


__all__ = ["gather_records"]
