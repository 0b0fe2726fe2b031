"""A tensor broadcast over new positions in a captured ``forward``, as an ``expand`` record.

A conditioning vector repeated over the steps (a speaker embedding or a latent code joined
to every step: ``z.unsqueeze(1).expand(-1, x.size(1), -1)``, ``z.repeat(1, T, 1)``,
``z.expand_as(x)``) has size 1 on an axis that the result has at another tensor's length.
The two captures show which: the result's size there follows the input's length, so the
record reads a tensor of that size on the same axis, the nearest one computed before it
(the other tensors its users read first), and takes the size from it at any length. An
axis of the same size in both captures keeps that size. Tiling (repeating an axis longer
than 1) and the batch axis are refused by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..graph import LayerRecord
from .capture_tensors import Tensors, Unsupported, op_name


def expand_record(node: Any, name: str, tensors: Tensors, x: Any) -> list[LayerRecord]:
    """The ``expand`` record of ``node``, broadcasting ``x``; none where it keeps every size.

    Raises:
        Unsupported: axes added, the batch axis, a time-major or merged input, an axis
            longer than 1 repeated, or no tensor of the length it takes.
    """
    op = op_name(node)
    out, x_shapes = tensors.shapes[node.name], tensors.shapes[x.name]
    if len(out[0]) != len(x_shapes[0]):
        raise Unsupported(f"applies {op} adding axes")
    if tensors.is_swapped(x) or tensors.is_merged(x):
        raise Unsupported(f"applies {op} to a tensor whose batch axis is not alone first")
    if out[0][0] != x_shapes[0][0] or out[0][0] != tensors.batches[0]:
        raise Unsupported(f"applies {op} over the batch axis")
    sizes = [_size(op, axis, out, x_shapes) for axis in range(1, len(out[0]))]
    if all(size == -1 for size in sizes):
        return []  # every size kept: nothing to compute
    inputs: tuple[str, ...] = (tensors.name(x),)
    if None in sizes:
        free = [axis for axis, size in enumerate(sizes, start=1) if size is None]
        like = tensor_of_length(node, tensors, free, out)
        if like is None:
            raise Unsupported(f"applies {op} to a length no tensor computed before it has")
        inputs += (tensors.name(like),)
    return [LayerRecord(name, "expand", op.split(".")[-1], inputs, {"sizes": tuple(sizes)})]


def _size(op: str, axis: int, out: Any, given: Any) -> int | None:
    """-1 where ``x`` keeps its size on ``axis``, the size where it is the same in both
    captures, None where it follows the input's length."""
    sizes = [shapes[axis] for shapes in out if shapes is not None]
    had = [shapes[axis] for shapes in given if shapes is not None]
    if sizes == had:
        return -1
    if set(had) != {1}:
        raise Unsupported(
            f"applies {op} repeating axis {axis} of size {had[0]}; only axes of size 1 "
            "are broadcast (a conditioning vector over the steps)"
        )
    return sizes[0] if len(set(sizes)) == 1 else None


def tensor_of_length(node: Any, tensors: Tensors, axes: list[int], out: Any) -> Any:
    """The tensor computed before ``node`` nearest to it (those its users read beside it
    first) with the batch axis first and the sizes of ``out`` (the shapes in both
    captures) on ``axes``; None where there is none."""
    return next((n for n in _nearest(node, tensors) if _fits(n, axes, out, tensors)), None)


def _nearest(node: Any, tensors: Tensors) -> Iterator[Any]:
    """The tensors computed before ``node``: those its users read beside it, then the
    others, the latest first."""
    for user in node.users:
        yield from (n for n in user.all_input_nodes if n is not node and n in tensors.names)
    yield from reversed([n for n in tensors.names if n is not node])


def _fits(candidate: Any, axes: list[int], out: Any, tensors: Tensors) -> bool:
    """Whether ``candidate`` has the batch axis first and the sizes of ``out`` on ``axes``
    in both captures."""
    first, second = tensors.shapes.get(str(getattr(candidate, "name", "")), ((), None))
    if second is None or tensors.holds(candidate):
        return False
    if tensors.is_swapped(candidate) or tensors.is_merged(candidate):
        return False
    return all(
        len(shape) > max(axes) and shape[0] == batch and all(shape[a] == o[a] for a in axes)
        for shape, o, batch in zip((first, second), out, tensors.batches)
    )


def repeat_record(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    """``x.repeat(1, T, 1)`` repeating only axes of size 1: an ``expand`` record."""
    return expand_record(node, name, tensors, args[0])


__all__ = ["expand_record", "repeat_record", "tensor_of_length"]
