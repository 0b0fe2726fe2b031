"""Splits of a tensor in a captured ``forward`` (``x.chunk(2, dim=-1)``, ``torch.split``,
``x.unbind(1)``) and ``F.glu``, as ``slice`` records.

- The split itself computes nothing; each piece ``forward`` uses (``a, b = h.chunk(2,
  -1)`` takes results 0 and 1) is a ``slice`` of the split axis, or for ``unbind`` one
  position of it. The axis must have the same size in both captures (not time): pieces
  of a free axis would change in number with its length.
- ``F.glu(x, dim)`` is its definition: the first half times the sigmoid of the second.
"""

from __future__ import annotations

import math
import operator
from typing import Any

from ..graph import LayerRecord
from .capture_tensors import Tensors, Unsupported, axis_of, op_name

SPLITS = frozenset({"aten.split", "aten.split_with_sizes", "aten.chunk", "aten.unbind"})


def is_piece(node: Any) -> bool:
    """Whether ``node`` takes one piece of a split (``operator.getitem`` of its results)."""
    return (
        node.op == "call_function"
        and node.target is operator.getitem
        and op_name(node.args[0]) in SPLITS
    )


def piece_records(node: Any, name: str, tensors: Tensors) -> list[LayerRecord]:
    """The ``slice`` record of piece ``node.args[1]`` of a split.

    Raises:
        Unsupported: a split of the batch axis, of an axis of free length, or of a
            time-major tensor.
    """
    split, index = node.args[0], int(node.args[1])
    op, x = op_name(split), split.args[0]
    if tensors.is_swapped(x):
        raise Unsupported(f"applies {op} to a time-major tensor (time, batch, ...)")
    args = list(split.args) + [None] * 3
    dim = args[1] if op == "aten.unbind" else args[2]
    dim = split.kwargs.get("dim", 0 if dim is None else dim)
    axis = axis_of(tensors, x, int(dim), op)
    first, second = tensors.shapes[x.name]
    size = first[axis]
    if second is not None and second[axis] != size:
        raise Unsupported(f"applies {op} over an axis of free length (dim={dim})")
    if op == "aten.unbind":
        options = {"axis": axis, "start": index, "stop": None, "step": 1, "keep_axis": False}
        return [LayerRecord(name, "slice", "unbind", (tensors.name(x),), options)]
    sizes = _sizes(op, args[1], size)
    start = sum(sizes[:index])
    stop = start + sizes[index]
    options = {"axis": axis, "start": start, "stop": stop, "step": 1, "keep_axis": True}
    return [LayerRecord(name, "slice", op.split(".")[-1], (tensors.name(x),), options)]


def _sizes(op: str, given: Any, size: int) -> list[int]:
    """The pieces' sizes, as torch cuts them."""
    if op == "aten.split_with_sizes":
        return [int(part) for part in given]
    step = int(given) if op == "aten.split" else math.ceil(size / int(given))
    return [min(step, size - start) for start in range(0, size, step)]


def _split(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    return []  # computes nothing: its pieces are read as slices


def _glu(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    """``F.glu(x, dim)``: ``a * sigmoid(b)``, ``a`` and ``b`` the halves of ``dim``."""
    x = args[0]
    dim = int(args[1]) if len(args) > 1 else int(kwargs.get("dim", -1))
    axis = axis_of(tensors, x, dim, "aten.glu")
    half = tensors.shapes[x.name][0][axis] // 2
    source = tensors.name(x)
    halves = [
        LayerRecord(
            f"{name}_{part}",
            "slice",
            "glu",
            (source,),
            {"axis": axis, "start": start, "stop": start + half, "step": 1, "keep_axis": True},
        )
        for part, start in (("a", 0), ("b", half))
    ]
    gate = LayerRecord(
        f"{name}_gate", "activation", "sigmoid", (halves[1].name,), {"activation": "sigmoid"}
    )
    options = {"op": "multiply", "mask_combine": "any"}
    return [*halves, gate, LayerRecord(name, "merge", "glu", (halves[0].name, gate.name), options)]


HANDLERS = {**dict.fromkeys(SPLITS, _split), "aten.glu": _glu}

__all__ = ["HANDLERS", "SPLITS", "is_piece", "piece_records"]
