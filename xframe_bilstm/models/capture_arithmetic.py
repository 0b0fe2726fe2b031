"""Elementwise arithmetic, powers, clamps and vector norms of a captured ``forward``, as
records.

- ``a + b``, ``a - b``, ``a * b``, ``a / b`` of two tensors are ``merge`` records. The
  tensors have one rank and the batch axis; any other axis may have size 1 in one of
  them, broadcast over the other's (``x / x.norm(dim=1, keepdim=True)``,
  ``h * mask.unsqueeze(-1)``), as Keras's merge layers broadcast. ``expand`` and
  ``expand_as`` feeding such an operation pass their input on, since it broadcasts;
  elsewhere they, and ``repeat`` of axes of size 1, are ``expand`` records
  (:mod:`.capture_expand`).
- With a tensor the module holds (a parameter, buffer or constant: ``x + self.position``,
  ``x * self.gamma``), they are ``weight_op`` records holding its value; it broadcasts
  from the right, over axes other than the batch.
- With a number, or ``clamp``/``clamp_min``/``clamp_max`` (a ``maximum`` or ``minimum``
  with a number, and ``F.hardtanh``), they are ``scalar_op`` records, and so are ``x ** c``
  and ``c ** x`` (``power``), ``sqrt``, ``rsqrt``, ``square`` (powers 0.5, -0.5, 2) and
  ``reciprocal`` (``1 / x``); ``abs``, ``log``, ``log1p``, ``expm1``, ``sign``, ``sin``
  and ``cos`` are ``elementwise`` records.
- ``torch.norm``/``torch.linalg.vector_norm`` of order 1 or 2 over axes (not the batch
  axis) is a ``reduce`` record (``l1_norm``, ``l2_norm``). With the two above, this reads
  ``F.normalize``, which ``torch.export`` writes as norm, ``clamp_min``, ``expand_as``
  and division; ``F.cosine_similarity`` is those records too (:mod:`xframe_bilstm.cosine`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..cosine import TORCH_FLOOR, dot_records
from ..graph import LayerRecord
from ..reference.tensor_ops import ELEMENTWISE
from .capture_expand import expand_record, repeat_record
from .capture_tensors import Shape, Tensors, Unsupported, axis_of, op_name

_MERGES = {"aten.add": "add", "aten.sub": "subtract", "aten.mul": "multiply", "aten.div": "divide"}
_CLAMPS = {
    "aten.clamp_min": ("min",),
    "aten.clamp_max": ("max",),
    "aten.clamp": ("min", "max"),
    "aten.hardtanh": ("min_val", "max_val"),  # F.hardtanh(x, 0, 20): a clamp, -1 to 1 unless given
}
_HARDTANH_BOUNDS = {"min_val": -1.0, "max_val": 1.0}
_NORMS = {1: "l1_norm", 2: "l2_norm"}
# Powers by a number: x ** c, and the functions that are one (x.sqrt() is x ** 0.5).
_POWERS = {"aten.sqrt": 0.5, "aten.rsqrt": -0.5, "aten.square": 2.0}


def _arithmetic(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    op = op_name(node)
    if kwargs.get("alpha", 1) != 1 or kwargs.get("rounding_mode") is not None:
        raise Unsupported(f"applies {op} with {dict(kwargs)}")
    if op == "aten.neg":
        args, op = [args[0], -1.0], "aten.mul"
    reverse = op == "aten.rsub"
    if reverse:
        op = "aten.sub"
    left, right = args[0], args[1]
    nodes = [value for value in (left, right) if hasattr(value, "op")]
    kind = op.split(".")[-1]
    held = [node for node in nodes if tensors.holds(node)]
    if len(nodes) == 2 and len(held) == 1:  # x + self.position, self.gamma * x
        first, second = (right, left) if reverse else (left, right)
        return [_weight_op(name, kind, _MERGES[op], first, second, tensors)]
    if len(nodes) == 2:
        names = [tensors.name(n) for n in nodes]  # a parameter is refused as such first
        _check_broadcast(op, [tensors.shapes[n.name] for n in nodes], tensors.batches)
        return [_record(name, "merge", kind, names, op=_MERGES[op], mask_combine="any")]
    if not isinstance(right if nodes[0] is left else left, (int, float)):
        raise Unsupported(f"applies {op} to a tensor and {type(right).__name__}")
    if nodes[0] is right:  # c - x, c / x: the constant comes first
        left, right, reverse = right, left, not reverse
    return [_scalar(name, kind, tensors.name(left), _MERGES[op], right, reverse)]


def _extreme(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    """``torch.maximum(a, b)``/``minimum`` of two tensors: a ``merge``; with a one-element
    tensor the module holds (an ONNX graph's ``Max(x, eps)``): a clamp, a ``scalar_op``."""
    op = op_name(node)
    extreme = "maximum" if op == "aten.maximum" else "minimum"
    held = [arg for arg in args[:2] if tensors.holds(arg)]
    if len(held) == 1:
        value, (x,) = tensors.value(held[0]), [arg for arg in args[:2] if arg is not held[0]]
        if value is None or value.size != 1:
            shape = None if value is None else value.shape
            raise Unsupported(f"applies {op} with a held tensor of shape {shape}")
        return [_scalar(name, extreme, tensors.name(x), extreme, float(value.reshape(())))]
    _check_broadcast(op, [tensors.shapes[arg.name] for arg in args[:2]], tensors.batches)
    inputs = [tensors.name(arg) for arg in args[:2]]
    return [_record(name, "merge", extreme, inputs, op=extreme, mask_combine="any")]


def _weight_op(name: str, cls: str, op: str, first: Any, second: Any, tensors: Tensors) -> Any:
    """``first op second`` where one of them is a tensor the module holds."""
    reverse = tensors.holds(first)
    x, held = (second, first) if reverse else (first, second)
    value = tensors.value(held)
    assert value is not None
    shapes = [shape for shape in tensors.shapes[x.name] if shape is not None]
    fits = value.ndim < len(shapes[0]) or (value.ndim == len(shapes[0]) and value.shape[0] == 1)
    for shape in shapes:  # from the right, as torch broadcasts: 1 or the input's size
        fits = fits and all(size in (1, own) for size, own in zip(value.shape[::-1], shape[:0:-1]))
    if not fits:
        raise Unsupported(
            f"applies aten.{cls} to a tensor of shape {shapes[0]} and {held.name!r} of shape "
            f"{tuple(value.shape)}, which broadcasts over the batch or grows the tensor"
        )
    options = {"op": op, "reverse": reverse, "shape": tuple(value.shape)}
    return LayerRecord(name, "weight_op", cls, (tensors.name(x),), options, {"value": value})


def _check_broadcast(
    op: str, shapes: list[tuple[Shape, Shape | None]], batches: tuple[int, int]
) -> None:
    """Refuses two tensors an elementwise ``op`` cannot combine as a Keras merge does:
    another rank, another batch axis, or axes that differ other than by a size 1 kept in
    both captures."""
    (a, a_second), (b, b_second) = shapes
    pairs = [(a, b, batches[0])] + ([] if a_second is None else [(a_second, b_second, batches[1])])
    sized_one: set[tuple[int, int]] = set()  # (axis, which input) broadcast in every capture
    for index, (first, second, batch) in enumerate(pairs):
        if second is None or len(first) != len(second) or {first[:1], second[:1]} != {(batch,)}:
            raise Unsupported(f"applies {op} to tensors of shapes {a} and {b}")
        ones = {
            (axis, 0 if size == 1 else 1)
            for axis, (size, other) in enumerate(zip(first, second))
            if size != other and 1 in (size, other)
        }
        mismatched = any(
            size != other and 1 not in (size, other) for size, other in zip(first, second)
        )
        if mismatched or (index and ones != sized_one):
            raise Unsupported(f"applies {op} to tensors of shapes {a} and {b}")
        sized_one = ones


def _power(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    op = op_name(node)
    if op in _POWERS:
        return [_scalar(name, op.split(".")[-1], tensors.name(args[0]), "power", _POWERS[op])]
    if op == "aten.reciprocal":
        return [_scalar(name, "reciprocal", tensors.name(args[0]), "divide", 1.0, reverse=True)]
    base, exponent = args[0], args[1]
    if hasattr(base, "op") and isinstance(exponent, (int, float)):  # x ** c
        return [_scalar(name, "pow", tensors.name(base), "power", exponent)]
    if isinstance(base, (int, float)) and hasattr(exponent, "op"):  # c ** x
        return [_scalar(name, "pow", tensors.name(exponent), "power", base, reverse=True)]
    raise Unsupported(f"applies {op} to {type(base).__name__} and {type(exponent).__name__}")


def _elementwise(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    function = op_name(node).split(".")[-1]
    options = {"function": function}
    return [LayerRecord(name, "elementwise", function, (tensors.name(args[0]),), options)]


def _clamp(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    op = op_name(node)
    bounds = dict(zip(_CLAMPS[op], args[1:])) | kwargs
    if op == "aten.hardtanh":
        bounds = _HARDTANH_BOUNDS | bounds
        bounds = {"min": bounds["min_val"], "max": bounds["max_val"]}
    if any(not isinstance(value, (int, float, type(None))) for value in bounds.values()):
        raise Unsupported(f"applies {op} with bounds that are tensors")
    given = [(bound, bounds[bound]) for bound in ("min", "max") if bounds.get(bound) is not None]
    if not given:
        raise Unsupported(f"applies {op} with no bound")
    records, x = [], tensors.name(args[0])
    for index, (bound, value) in enumerate(given):  # clamp(x, lo, hi) = min(max(x, lo), hi)
        extreme = "maximum" if bound == "min" else "minimum"
        here = name if index == len(given) - 1 else f"{name}_{bound}"
        records.append(_scalar(here, op.split(".")[-1], x, extreme, value))
        x = here
    return records


def _norm(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    op = op_name(node)
    values = dict(zip(("ord", "dim", "keepdim"), args[1:])) | kwargs
    order, dims = values.get("ord", 2), values.get("dim")
    if order not in _NORMS or values.get("dtype") is not None:
        raise Unsupported(f"applies {op} of order {order}; orders 1 and 2 are read")
    if dims is None or (isinstance(dims, (list, tuple)) and not dims):
        raise Unsupported(f"applies {op} over every axis, the batch axis included")
    dims = dims if isinstance(dims, (list, tuple)) else [dims]
    axes = tuple(sorted(axis_of(tensors, args[0], int(dim), op) for dim in dims))
    options = {"op": _NORMS[order], "axes": axes, "keepdims": bool(values.get("keepdim", False))}
    return [LayerRecord(name, "reduce", "norm", (tensors.name(args[0]),), options)]


def _cosine(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    """``F.cosine_similarity(a, b, dim, eps)`` of two tensors of one shape: each divided by
    its norm, at least ``eps``, then their product summed over ``dim`` (as torch computes
    it, :mod:`xframe_bilstm.cosine`)."""
    op = op_name(node)
    values = dict(zip(("x1", "x2", "dim", "eps"), args)) | kwargs
    a, b = values["x1"], values["x2"]
    if tensors.shapes[a.name] != tensors.shapes[b.name]:
        raise Unsupported(f"applies {op} to tensors of other shapes (broadcast)")
    axis = axis_of(tensors, a, int(values.get("dim", 1)), op)
    floor = float(values.get("eps", TORCH_FLOOR))
    inputs = (tensors.name(a), tensors.name(b))
    return dot_records(name, inputs, axis, floor=floor, keepdims=False, class_name="cosine")


def _expand(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    """Nothing to compute where only arithmetic with a tensor of the expanded shape reads
    the expanded tensor (broadcasting against that tensor expands it the same way);
    elsewhere an ``expand`` record (:mod:`.capture_expand`)."""
    same_rank = tensors.rank(args[0]) == tensors.rank(node)
    if same_rank and node.users and all(_broadcasts(user, node, tensors) for user in node.users):
        return []
    return expand_record(node, name, tensors, args[0])


def _broadcasts(user: Any, node: Any, tensors: Tensors) -> bool:
    """Whether ``user`` is arithmetic with a tensor of ``node``'s shape."""
    if op_name(user) not in _MERGES:
        return False
    others = [arg for arg in user.args[:2] if hasattr(arg, "op") and arg is not node]
    return bool(others) and tensors.shapes[others[0].name] == tensors.shapes[node.name]


def _scalar(
    name: str, cls: str, x: str, op: str, constant: float, reverse: bool = False
) -> LayerRecord:
    options = {"op": op, "constant": float(constant), "reverse": reverse}
    return LayerRecord(name, "scalar_op", cls, (x,), options)


def _record(name: str, kind: str, cls: str, inputs: list[str], **options: Any) -> LayerRecord:
    return LayerRecord(name, kind, cls, tuple(inputs), options)


Handler = Callable[[Any, str, Tensors, list, dict], list]
HANDLERS: dict[str, Handler] = {
    **dict.fromkeys([*_MERGES, "aten.rsub", "aten.neg"], _arithmetic),
    **dict.fromkeys(_CLAMPS, _clamp),
    **dict.fromkeys([*_POWERS, "aten.reciprocal", "aten.pow"], _power),
    **dict.fromkeys([f"aten.{function}" for function in ELEMENTWISE], _elementwise),
    "aten.linalg_vector_norm": _norm,
    "aten.cosine_similarity": _cosine,
    **dict.fromkeys(["aten.maximum", "aten.minimum"], _extreme),
    **dict.fromkeys(["aten.expand", "aten.expand_as"], _expand),
    "aten.repeat": repeat_record,
}

__all__ = ["HANDLERS"]
