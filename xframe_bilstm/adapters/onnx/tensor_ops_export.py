"""The tensor operations of a captured ``forward`` as standard ONNX operators, computing
what :mod:`xframe_bilstm.reference.tensor_ops` computes: ``ReduceSum``/``ReduceMean``/
``ReduceMax``/``ReduceMin``/``ReduceL1``/``ReduceL2``, ``Slice`` (and ``Squeeze`` for one
position), ``Add``/``Sub``/``Mul``/``Div``/``Max``/``Min``/``Pow`` with a constant (a
number, or a ``weight_op`` record's tensor), ``Abs``/``Log``/``Sign``/``Sin``/``Cos``,
``MatMul`` (after a ``Transpose`` of the last two axes where said), and ``Where`` of a
comparison with a number."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...graph import LayerRecord
from ...reference.where import evaluate, expression
from .builder import GraphBuilder

Emitted = tuple[str, str | None]
_END = np.iinfo(np.int64).max
_REDUCE_OPS = {
    "sum": "ReduceSum",
    "mean": "ReduceMean",
    "max": "ReduceMax",
    "min": "ReduceMin",
    "l1_norm": "ReduceL1",
    "l2_norm": "ReduceL2",
    "logsumexp": "ReduceLogSumExp",
}
_SCALAR_OPS = {
    "add": "Add",
    "subtract": "Sub",
    "multiply": "Mul",
    "divide": "Div",
    "maximum": "Max",
    "minimum": "Min",
    "power": "Pow",
}
# From these opsets on, the reductions take their axes as an input.
_AXES_INPUT = {
    "ReduceSum": 13,
    **dict.fromkeys(
        ["ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceLogSumExp"], 18
    ),
}


def _reduce(builder: GraphBuilder, record: LayerRecord, x: str, mask: str | None) -> Emitted:
    options, prefix = record.options, record.name
    axes = [int(axis) for axis in options["axes"]]
    keep = bool(options["keepdims"])
    if options["op"] not in ("var", "std"):
        return _reduced(builder, _REDUCE_OPS[str(options["op"])], x, axes, keep, prefix), None
    mean = _reduced(builder, "ReduceMean", x, axes, True, f"{prefix}/mean")
    centred = builder.one("Sub", [x, mean], f"{prefix}/centred")
    squares = builder.one("Mul", [centred, centred], f"{prefix}/squares")
    total = _reduced(builder, "ReduceSum", squares, axes, keep, f"{prefix}/total")
    shape = builder.one("Shape", [x], f"{prefix}/shape")
    sizes = builder.one("Gather", [shape, builder.ints(f"{prefix}/at", axes)], f"{prefix}/sizes")
    count = builder.one("ReduceProd", [sizes], f"{prefix}/count", keepdims=0)
    float_type = builder.onnx.helper.np_dtype_to_tensor_dtype(builder.float_dtype)
    count = builder.one("Cast", [count], f"{prefix}/count_float", to=float_type)
    correction = builder.constant(
        f"{prefix}/correction", np.asarray(options["correction"], builder.float_dtype)
    )
    divisor = builder.one("Sub", [count, correction], f"{prefix}/divisor")
    spread = builder.one("Div", [total, divisor], f"{prefix}/var")
    if options["op"] == "var":
        return builder.one("Identity", [spread], prefix), None
    return builder.one("Sqrt", [spread], prefix), None


def _reduced(builder: GraphBuilder, op: str, x: str, axes: list[int], keep: bool, name: str) -> str:
    """``op`` over ``axes``, given as an attribute or an input as the opset takes them."""
    if builder.opset >= _AXES_INPUT[op]:
        axes_input = builder.ints(f"{name}/axes", axes)
        return builder.one(op, [x, axes_input], name, keepdims=int(keep))
    return builder.one(op, [x], name, axes=axes, keepdims=int(keep))


def _slice(builder: GraphBuilder, record: LayerRecord, x: str, mask: str | None) -> Emitted:
    options, prefix = record.options, record.name
    axis, start = int(options["axis"]), int(options["start"])
    if options["keep_axis"]:
        step = int(options["step"])
        stop = (
            (_END if step > 0 else -_END - 1) if options["stop"] is None else int(options["stop"])
        )
    else:
        stop, step = (_END if start == -1 else start + 1), 1
    bounds = [
        builder.ints(f"{prefix}/{what}", [value])
        for what, value in (("starts", start), ("ends", stop), ("axes", axis), ("steps", step))
    ]
    y = builder.one(
        "Slice", [x, *bounds], f"{prefix}/slice" if not options["keep_axis"] else prefix
    )
    if options["keep_axis"]:
        return y, None
    return builder.one("Squeeze", [y, builder.ints(f"{prefix}/axis", [axis])], prefix), None


def _scalar_op(builder: GraphBuilder, record: LayerRecord, x: str, mask: str | None) -> Emitted:
    options = record.options
    constant = builder.constant(
        f"{record.name}/constant", np.asarray(float(options["constant"]), builder.float_dtype)
    )
    inputs = [constant, x] if options["reverse"] else [x, constant]
    return builder.one(_SCALAR_OPS[str(options["op"])], inputs, record.name), mask


def _weight_op(builder: GraphBuilder, record: LayerRecord, x: str, mask: str | None) -> Emitted:
    options = record.options
    value = builder.constant(
        f"{record.name}/value", np.asarray(record.weights["value"], builder.float_dtype)
    )
    inputs = [value, x] if options["reverse"] else [x, value]
    return builder.one(_SCALAR_OPS[str(options["op"])], inputs, record.name), mask


_ELEMENTWISE_OPS = {"abs": "Abs", "log": "Log", "sign": "Sign", "sin": "Sin", "cos": "Cos"}


def _elementwise(builder: GraphBuilder, record: LayerRecord, x: str, mask: str | None) -> Emitted:
    function, prefix = str(record.options["function"]), record.name
    if function in _ELEMENTWISE_OPS:
        return builder.one(_ELEMENTWISE_OPS[function], [x], prefix), mask
    one = builder.constant(f"{prefix}/one", np.asarray(1.0, builder.float_dtype))
    if function == "log1p":
        return builder.one("Log", [builder.one("Add", [x, one], f"{prefix}/plus1")], prefix), mask
    return builder.one("Sub", [builder.one("Exp", [x], f"{prefix}/exp"), one], prefix), mask


def _repeat(builder: GraphBuilder, record: LayerRecord, x: str, mask: str | None) -> Emitted:
    """Each position on ``axis`` repeated: a new axis after it, expanded to ``repeats``,
    then merged into it, sizes read from ``x``'s ``Shape``."""
    prefix, axis = record.name, int(record.options["axis"])
    repeats = builder.ints(f"{prefix}/repeats", [int(record.options["repeats"])])
    shape = builder.one("Shape", [x], f"{prefix}/shape")

    def part(start: int, stop: int, what: str) -> str:
        bounds = [builder.ints(f"{prefix}/{what}_{end}", [value])
                  for end, value in (("start", start), ("stop", stop))]  # fmt: skip
        return builder.one("Slice", [shape, *bounds], f"{prefix}/{what}")

    before, here, after = (
        part(0, axis, "before"),
        part(axis, axis + 1, "here"),
        part(axis + 1, _END, "after"),
    )
    spread = builder.one(
        "Unsqueeze", [x, builder.ints(f"{prefix}/new_axis", [axis + 1])], f"{prefix}/spread"
    )
    target = builder.one("Concat", [before, here, repeats, after], f"{prefix}/target", axis=0)
    expanded = builder.one("Expand", [spread, target], f"{prefix}/expanded")
    merged = builder.one("Mul", [here, repeats], f"{prefix}/merged")
    final = builder.one("Concat", [before, merged, after], f"{prefix}/final", axis=0)
    return builder.one("Reshape", [expanded, final], prefix), None


EMITTERS = {
    "repeat": _repeat,
    "reduce": _reduce,
    "slice": _slice,
    "scalar_op": _scalar_op,
    "weight_op": _weight_op,
    "elementwise": _elementwise,
}


def emit_matmul(
    builder: GraphBuilder, record: LayerRecord, tensors: Sequence[str], rank: int
) -> Emitted:
    """The ``MatMul`` of a ``matmul`` record's two inputs, of rank ``rank``; no mask after."""
    swap = [*range(rank - 2), rank - 1, rank - 2]
    a, b = tensors
    if record.options["transpose_a"]:
        a = builder.one("Transpose", [a], f"{record.name}/a", perm=swap)
    if record.options["transpose_b"]:
        b = builder.one("Transpose", [b], f"{record.name}/b", perm=swap)
    return builder.one("MatMul", [a, b], record.name), None


def emit_expand(builder: GraphBuilder, record: LayerRecord, tensors: Sequence[str]) -> Emitted:
    """The ``Expand`` of an ``expand`` record's ``(x,)`` or ``(x, like)``: the target
    shape is 1 where ``x`` keeps its size (``Expand`` broadcasts both ways), the size
    given, or ``like``'s size from its ``Shape``; no mask after."""
    prefix, sizes = record.name, list(record.options["sizes"])
    parts = [builder.ints("size1", [1])]
    for axis, size in enumerate(sizes, start=1):
        if size is not None:
            parts.append(builder.ints(f"size{1 if size == -1 else size}", [max(size, 1)]))
            continue
        like_shape = builder.one("Shape", [tensors[1]], f"{prefix}/like_shape")
        bounds = [builder.ints(f"at{axis}", [axis]), builder.ints(f"at{axis + 1}", [axis + 1])]
        parts.append(builder.one("Slice", [like_shape, *bounds], f"{prefix}/size{axis}"))
    target = builder.one("Concat", parts, f"{prefix}/target", axis=0)
    return builder.one("Expand", [tensors[0], target], prefix), None


def emit_gather(builder: GraphBuilder, record: LayerRecord, tensors: Sequence[str]) -> Emitted:
    """The ``GatherElements`` of a ``gather`` record's ``(x, index)``, the positions cast to
    int64; no mask after."""
    types = builder.onnx.TensorProto
    index = builder.one("Cast", [tensors[1]], f"{record.name}/index", to=types.INT64)
    axis = int(record.options["axis"])
    return builder.one("GatherElements", [tensors[0], index], record.name, axis=axis), None


def emit_slice_to(builder: GraphBuilder, record: LayerRecord, tensors: Sequence[str]) -> Emitted:
    """The ``Slice`` of a ``slice_to`` record's ``(x, like)``: from 0 to ``like``'s size on
    the axis (from ``Shape``); no mask after."""
    axis, prefix = int(record.options["axis"]), record.name
    like_shape = builder.one("Shape", [tensors[1]], f"{prefix}/like_shape")
    bounds = [builder.ints(f"at{axis}", [axis]), builder.ints(f"at{axis + 1}", [axis + 1])]
    end = builder.one("Slice", [like_shape, *bounds], f"{prefix}/end")
    start, axes = builder.ints("zeros1", [0]), builder.ints(f"at{axis}", [axis])
    return builder.one("Slice", [tensors[0], start, end, axes], prefix), None


# The emitters of the operations whose second input gives sizes or positions.
INDEXED_EMITTERS = {"expand": emit_expand, "gather": emit_gather, "slice_to": emit_slice_to}


_COMPARE_OPS = {
    "eq": "Equal",
    "ne": "Equal",  # then Not
    "lt": "Less",
    "le": "LessOrEqual",
    "gt": "Greater",
    "ge": "GreaterOrEqual",
}


def emit_where(builder: GraphBuilder, record: LayerRecord, tensors: Sequence[str]) -> Emitted:
    """The ``Where`` of a ``where`` record's inputs ``(x, source, ...)``: each source compared
    in float64 (token ids and floats alike) after ``Unsqueeze``, comparisons combined with
    ``And``/``Or``; no mask after."""
    options, prefix = record.options, record.name
    terms = iter(range(1_000_000))  # one name per comparison and combination

    def leaf(term: Mapping[str, Any], index: int) -> str:
        name = f"{prefix}/term{next(terms)}" if "condition" in options else prefix
        return _comparison(builder, term, tensors[index], name)

    def both(op: str, a: str, b: str) -> str:
        return builder.one(op.capitalize(), [a, b], f"{prefix}/{op}{next(terms)}")

    holds = evaluate(expression(options), leaf, both)
    fill = builder.constant(
        f"{prefix}/fill", np.asarray(float(options["fill"]), builder.float_dtype)
    )
    otherwise = tensors[0]
    if "otherwise" in options:  # a mask as numbers, shaped as the condition
        value = np.asarray(float(options["otherwise"]), builder.float_dtype)
        otherwise = builder.constant(f"{prefix}/otherwise", value)
    return builder.one("Where", [holds, fill, otherwise], prefix), None


def _comparison(builder: GraphBuilder, term: Mapping[str, Any], source: str, prefix: str) -> str:
    """``Unsqueeze(Cast(source, double), axes) <compare> value`` as a boolean tensor."""
    double = builder.onnx.TensorProto.DOUBLE
    compared = builder.one("Cast", [source], f"{prefix}/source", to=double)
    axes = [int(axis) for axis in term["axes"]]
    if axes:
        axes_input = builder.ints(f"{prefix}/axes", sorted(axes))
        compared = builder.one("Unsqueeze", [compared, axes_input], f"{prefix}/unsqueeze")
    value = builder.constant(f"{prefix}/value", np.asarray(float(term["value"]), np.float64))
    compare = str(term["compare"])
    holds = builder.one(_COMPARE_OPS[compare], [compared, value], f"{prefix}/condition")
    if compare == "ne":
        holds = builder.one("Not", [holds], f"{prefix}/not")
    return holds


__all__ = [
    "EMITTERS",
    "INDEXED_EMITTERS",
    "emit_expand",
    "emit_gather",
    "emit_matmul",
    "emit_where",
]
