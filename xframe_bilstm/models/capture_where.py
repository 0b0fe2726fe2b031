"""Padding masks written in a captured ``forward``, read into ``where`` records.

Attention written by hand masks its scores with a boolean tensor computed from the token
ids: ``scores.masked_fill(mask.unsqueeze(1) == 0, -1e9)``, ``masked_fill(~mask, -inf)``
or ``torch.where(mask, scores, float("-inf"))`` with ``mask = ids != 0``. No Keras layer
holds a boolean tensor, so such a tensor is not a record: it is followed as a
:class:`Condition` (a tensor of the model compared with a number, then given axes of size
1, negated or compared with 0 or 1 again) until ``masked_fill`` or ``where`` with a number
reads it, or it becomes numbers (``mask.float()``, ``torch.where(mask, 1.0, 0.0)``, or
read so by arithmetic and sums, ``h * mask.unsqueeze(-1)``, ``mask.sum(1)``: the weights of
a masked mean), which becomes one ``where`` record (:mod:`xframe_bilstm.reference.where`).
Conditions combined with ``&``, ``|`` (or ``torch.logical_and``/``logical_or``) are followed
as a :class:`Combined`, negations pushed down to the comparisons. A condition read by
anything else is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..graph import LayerRecord
from ..reference.where import NEGATED
from .capture_ops import Tensors, Unsupported, op_name

_COMPARE = {"aten.eq", "aten.ne", "aten.lt", "aten.le", "aten.gt", "aten.ge"}
_NOT = {"aten.bitwise_not", "aten.logical_not", "aten.__invert__"}
_COMBINE = {
    "aten.__and__": "and",
    "aten.bitwise_and": "and",
    "aten.logical_and": "and",
    "aten.__or__": "or",
    "aten.bitwise_or": "or",
    "aten.logical_or": "or",
}
# Operations that leave a mask as it is (``expand`` only broadcasts it), as long as it
# stays boolean.
_SAME = {"aten.clone", "aten.contiguous", "aten.alias", "aten.expand", "aten._to_copy", "aten.to"}
READERS = frozenset({"aten.masked_fill", "aten.where"})
# Arithmetic and sums that read a boolean mask as its numbers, as torch promotes it:
# ``h * mask.unsqueeze(-1)``, ``mask.sum(1)``.
NUMERIC_READERS = frozenset(
    {"aten.mul", "aten.add", "aten.sub", "aten.rsub", "aten.div", "aten.sum", "aten.mean"}
)


@dataclass(frozen=True)
class Condition:
    """A boolean tensor: ``source`` compared with ``value``; ``source``'s axes sit at
    ``positions`` of the condition's axes, and ``inserted`` are the axes of size 1 added."""

    source: Any
    compare: str
    value: float
    positions: tuple[int, ...]
    inserted: tuple[int, ...] = ()

    @property
    def rank(self) -> int:
        return len(self.positions) + len(self.inserted)


@dataclass(frozen=True)
class Combined:
    """Conditions of one rank that all hold (``op`` ``"and"``) or any holds (``"or"``)."""

    op: str
    parts: tuple[Condition | Combined, ...]

    @property
    def rank(self) -> int:
        return self.parts[0].rank


Mask = Condition | Combined


def _number(value: Any) -> bool:
    return isinstance(value, (bool, int, float))


def read_condition(node: Any, tensors: Tensors, conditions: dict[Any, Mask]) -> bool:
    """Follow ``node`` as a condition where it computes one; whether it did.

    Raises:
        Unsupported: an operation on a condition that no ``where`` record reads.
    """
    op = op_name(node)
    args = list(node.args)
    # A mask already made numbers (masks_read_as_numbers) is read as a tensor.
    given = [arg for arg in node.all_input_nodes if arg in conditions and arg not in tensors.names]
    if op in READERS:
        return False
    if op in _COMPARE and len(args) == 2 and _number(args[1]) and hasattr(args[0], "op"):
        if args[0] in conditions:  # mask == 0, mask != 0, mask == True...
            before = conditions[args[0]]
            if op not in ("aten.eq", "aten.ne") or float(args[1]) not in (0.0, 1.0):
                raise Unsupported(f"applies {op} to a boolean mask with {args[1]!r}")
            keeps = (op == "aten.eq") == (float(args[1]) == 1.0)
            conditions[node] = before if keeps else _negated(before)
            return True
        source = args[0]
        first, second = tensors.shapes[source.name]
        if (
            not first
            or first[0] != tensors.batches[0]
            or (second and second[0] != tensors.batches[1])
        ):
            raise Unsupported(f"applies {op} to a tensor without the batch axis first")
        tensors.name(source)
        compare = op.split(".")[1]
        conditions[node] = Condition(source, compare, float(args[1]), tuple(range(len(first))))
        return True
    if not given:
        return False
    if op in _COMBINE:
        conditions[node] = _combined(op, args, conditions)
        return True
    before = conditions[given[0]]
    if op in _NOT:
        conditions[node] = _negated(before)
    elif op == "aten.unsqueeze":
        conditions[node] = _unsqueezed(before, int(args[1]))
    elif op in _SAME:
        if tuple(node.meta["val"].shape) != tuple(given[0].meta["val"].shape) and op != (
            "aten.expand"
        ):
            raise Unsupported(f"applies {op} to a boolean mask")
        if str(node.meta["val"].dtype) != "torch.bool":
            raise Unsupported(
                f"turns a boolean mask into {node.meta['val'].dtype} ({op}); a mask becomes "
                "numbers as a float or integer tensor (mask.float(), mask.long()), or is read "
                "by masked_fill and torch.where with a number"
            )
        conditions[node] = before
    elif op == "aten.slice" and _whole(args):
        conditions[node] = before
    else:
        raise Unsupported(
            f"applies {op} to a boolean mask; a mask is read only as comparisons of tensors "
            "with numbers, combined with & or |, unsqueezed or negated, passed to masked_fill "
            "or torch.where with a number"
        )
    return True


def _whole(args: list) -> bool:
    start = args[2] if len(args) > 2 else None
    stop = args[3] if len(args) > 3 else None
    step = args[4] if len(args) > 4 else 1
    return start in (None, 0) and (stop is None or int(stop) >= 2**62) and step == 1


def _combined(op: str, args: list, conditions: dict[Any, Mask]) -> Combined:
    """``a & b`` or ``a | b`` of two conditions of one rank."""
    operands = args[:2]
    if len(args) != 2 or any(operand not in conditions for operand in operands):
        raise Unsupported(
            f"applies {op} to a boolean mask and something that is not one; combine "
            "comparisons of tensors with numbers"
        )
    a, b = (conditions[operand] for operand in operands)
    if a.rank != b.rank:
        raise Unsupported(
            f"applies {op} to boolean masks of ranks {a.rank} and {b.rank}; unsqueeze them "
            "to one rank"
        )
    kind = _COMBINE[op]
    parts = [
        part.parts if isinstance(part, Combined) and part.op == kind else (part,) for part in (a, b)
    ]
    return Combined(kind, tuple(item for group in parts for item in group))


def _negated(condition: Mask) -> Mask:
    if isinstance(condition, Combined):  # De Morgan
        other = "or" if condition.op == "and" else "and"
        return Combined(other, tuple(_negated(part) for part in condition.parts))
    return replace(condition, compare=NEGATED[condition.compare])


def _unsqueezed(condition: Mask, dim: int) -> Mask:
    if isinstance(condition, Combined):
        return Combined(condition.op, tuple(_unsqueezed(part, dim) for part in condition.parts))
    rank = condition.rank + 1
    axis = dim + rank if dim < 0 else dim
    if axis == 0:
        raise Unsupported("unsqueezes a boolean mask before its batch axis")
    positions = tuple(p + 1 if p >= axis else p for p in condition.positions)
    inserted = tuple(sorted([*(p + 1 if p >= axis else p for p in condition.inserted), axis]))
    return Condition(condition.source, condition.compare, condition.value, positions, inserted)


def masks_read_as_numbers(node: Any, tensors: Tensors, conditions: dict[Any, Mask]) -> list[Any]:
    """The masks an arithmetic operation or sum ``node`` reads as numbers, not made numbers
    yet (:func:`numbers_record`); a mask made numbers is a tensor from then on."""
    if op_name(node) not in NUMERIC_READERS:
        return []
    return [arg for arg in node.all_input_nodes if arg in conditions and arg not in tensors.names]


def numbers_record(name: str, condition: Mask, tensors: Tensors) -> LayerRecord:
    """The ``where`` record of a mask as numbers: 1 where ``condition`` holds, 0 elsewhere."""
    return _as_numbers(name, "float", condition, 1.0, 0.0, tensors)


def is_mask_as_numbers(node: Any, conditions: dict[Any, Mask]) -> bool:
    """Whether ``node`` turns a condition into numbers: a float tensor (``mask.float()``),
    or an integer one (``mask.long()``, which ONNX writes for ``mask.sum(1)``; read as
    floats of the same values, as a sum or a position is computed alike)."""
    value = node.meta.get("val")
    return (
        op_name(node) in ("aten._to_copy", "aten.to")
        and bool(node.args)
        and node.args[0] in conditions
        and getattr(value, "dtype", None) is not None
        and str(value.dtype) != "torch.bool"
        and not value.dtype.is_complex
    )


def where_records(
    node: Any, name: str, tensors: Tensors, conditions: dict[Any, Mask]
) -> list[LayerRecord]:
    """The ``where`` record of ``x.masked_fill(mask, number)`` or ``torch.where(mask, x,
    number)`` (or ``torch.where(mask, number, x)``).

    Raises:
        Unsupported: the mask is not a condition read here, the fill is not a number, or
            the mask does not broadcast to ``x``.
    """
    op = op_name(node)
    args = list(node.args)
    if is_mask_as_numbers(node, conditions):  # mask.float(): 1 where it holds, 0 elsewhere
        return [_as_numbers(name, "float", conditions[args[0]], 1.0, 0.0, tensors)]
    if op == "aten.where" and len(args) == 3 and _number(args[1]) and _number(args[2]):
        if args[0] not in conditions:
            raise Unsupported(f"applies {op} with a mask that is not a comparison with a number")
        return [_as_numbers(name, "where", conditions[args[0]], args[1], args[2], tensors)]
    if op == "aten.masked_fill":
        x, mask, fill, fills_where = args[0], args[1], args[2], True
    elif len(args) == 3 and _number(args[2]):
        mask, x, fill, fills_where = args[0], args[1], args[2], False
    elif len(args) == 3 and _number(args[1]):
        mask, fill, x, fills_where = args[0], args[1], args[2], True
    else:
        raise Unsupported(f"applies {op} with two tensors; a Python number as the fill is read")
    if not _number(fill):
        raise Unsupported(f"applies {op} with a tensor fill; give a Python number")
    if mask not in conditions:
        raise Unsupported(
            f"applies {op} with a mask that is not a comparison of a tensor with a number"
        )
    condition = conditions[mask] if fills_where else _negated(conditions[mask])
    shape = tuple(tensors.shapes[x.name][0])
    mask_shape = tuple(int(size) for size in mask.meta["val"].shape)
    if len(mask_shape) != len(shape) or np.broadcast_shapes(mask_shape, shape) != shape:
        raise Unsupported(
            f"applies {op} with a mask of shape {mask_shape} to a tensor of shape {shape}; "
            "unsqueeze the mask to the tensor's rank"
        )
    if isinstance(condition, Combined):
        sources: list[str] = []
        options = {"fill": float(fill), "condition": _terms(condition, tensors, sources)}
        inputs = (tensors.name(x), *sources)
        return [LayerRecord(name, "where", op.split(".")[-1], inputs, options)]
    options = {
        "compare": condition.compare,
        "value": condition.value,
        "fill": float(fill),
        "axes": condition.inserted,
    }
    inputs = (tensors.name(x), tensors.name(condition.source))
    return [LayerRecord(name, "where", op.split(".")[-1], inputs, options)]


def _as_numbers(
    name: str, cls: str, condition: Mask, fill: float, otherwise: float, tensors: Tensors
) -> LayerRecord:
    """A mask as numbers: ``fill`` where ``condition`` holds, ``otherwise`` elsewhere; input 0
    (``x`` of other ``where`` records) is the first source again, unread."""
    numbers = {"fill": float(fill), "otherwise": float(otherwise)}
    if isinstance(condition, Combined):
        sources: list[str] = []
        options = {**numbers, "condition": _terms(condition, tensors, sources)}
        return LayerRecord(name, "where", cls, (sources[0], *sources), options)
    options = {
        "compare": condition.compare,
        "value": condition.value,
        "axes": condition.inserted,
        **numbers,
    }
    source = tensors.name(condition.source)
    return LayerRecord(name, "where", cls, (source, source), options)


def _terms(condition: Mask, tensors: Tensors, sources: list[str]) -> dict[str, Any]:
    """The ``condition`` option of a combined mask; ``sources`` gathers the tensors its
    comparisons read (input 0 being ``x``)."""
    if isinstance(condition, Combined):
        return {"op": condition.op, "args": [_terms(p, tensors, sources) for p in condition.parts]}
    source = tensors.name(condition.source)
    if source not in sources:
        sources.append(source)
    return {
        "compare": condition.compare,
        "value": condition.value,
        "axes": condition.inserted,
        "input": sources.index(source) + 1,
    }


__all__ = [
    "READERS",
    "Combined",
    "Condition",
    "Mask",
    "is_mask_as_numbers",
    "masks_read_as_numbers",
    "numbers_record",
    "read_condition",
    "where_records",
]
