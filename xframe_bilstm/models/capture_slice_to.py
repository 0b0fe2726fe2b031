"""A slice cut to the length of the tensor it is combined with, read from a captured
``forward``.

``x + skip[..., : x.shape[-1]]`` (an encoder's output cut to its decoder's length, as
demucs's denoiser joins them) slices ``skip`` at a position that follows ``x``'s length:
a different number in each capture. Where a tensor read beside the slice has, in both
captures, as many positions on that axis as the slice keeps, the slice is a ``slice_to``
record of that tensor: wherever the original runs, the two have one length there.
"""

from __future__ import annotations

from typing import Any

from ..graph import LayerRecord
from .capture_expand import tensor_of_length
from .capture_tensors import Names, Tensors, axis_of, op_name


def slice_to_beside(node: Any, other: Any, tensors: Tensors, names: Names) -> LayerRecord | None:
    """The ``slice_to`` record of ``node`` (``other``: the node in the second capture, or
    None); None where it is no slice from 0 whose end differs between the captures, or no
    tensor read beside it has the length it keeps."""
    args = list(node.args)
    if other is None or op_name(node) != "aten.slice" or len(args) < 4:
        return None
    step = args[4] if len(args) > 4 else 1
    if args[2] not in (0, None) or step != 1 or other.args[3:4] == args[3:4]:
        return None
    first, second = tensors.shapes.get(str(node.name), ((), None))
    if second is None:
        return None
    dim = int(args[1]) % len(first)
    like = tensor_of_length(node, tensors, [dim], (first, second))
    beside = {n for user in node.users for n in user.all_input_nodes if n is not node}
    if like not in beside:
        return None
    axis = axis_of(tensors, args[0], dim, "slices")
    inputs = (tensors.name(args[0]), tensors.name(like))
    return LayerRecord(names(node.name), "slice_to", "slice", inputs, {"axis": axis})


__all__ = ["slice_to_beside"]
