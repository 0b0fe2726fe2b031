"""Merges, permutes, repeats, ``TimeDistributed`` and activation layers as standard ONNX
operators, computing what :mod:`xframe_bilstm.reference.shape_layers` computes.

``TimeDistributed`` reshapes (B, T, ...) to (B·T, ...) with the runtime's own shapes, emits
the wrapped layer as any other layer, and reshapes back, so it wraps every exported kind.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import numpy as np

from ...graph import LayerRecord, ModelGraph
from ...time_distributed import MASK_READERS
from .activation_export import scalar
from .builder import GraphBuilder

Emitted = tuple[str, str | None]
Emitter = Callable[[GraphBuilder, LayerRecord, str, str | None], Emitted]
_END = np.iinfo(np.int64).max


def _relu(builder: GraphBuilder, record: LayerRecord, x: str) -> str:
    options, prefix = record.options, record.name
    threshold, slope = float(options["threshold"]), float(options["negative_slope"])
    if threshold:
        above = builder.one("Greater", [x, scalar(builder, threshold)], f"{prefix}/above")
        y = builder.one("Where", [above, x, scalar(builder, 0.0)], f"{prefix}/kept")
    else:
        y = builder.one("Relu", [x], f"{prefix}/relu")
    if options["max_value"] is not None:
        bounds = [scalar(builder, 0.0), scalar(builder, float(options["max_value"]))]
        y = builder.one("Clip", [y, *bounds], f"{prefix}/clip")
    if not slope:
        return builder.one("Identity", [y], prefix)
    below = builder.one("Sub", [scalar(builder, threshold), x], f"{prefix}/below")
    below = builder.one("Relu", [below], f"{prefix}/below_relu")
    scaled = builder.one("Mul", [below, scalar(builder, slope)], f"{prefix}/scaled")
    return builder.one("Sub", [y, scaled], prefix)


def _steps(builder: GraphBuilder, mask: str | None, prefix: str) -> str | None:
    """A (B, T) mask as (B, T, 1), broadcasting over the features."""
    if mask is None:
        return None
    return builder.one("Unsqueeze", [mask, builder.ints("axes_last", [-1])], prefix)


def _merge_values(
    builder: GraphBuilder, record: LayerRecord, tensors: list[str], masks: list[str | None]
) -> str:
    op, prefix = str(record.options["op"]), record.name
    keras3 = record.options["mask_combine"] == "any" and any(m is not None for m in masks)
    steps = [
        _steps(builder, m, f"{prefix}/steps{i}") if keras3 else None for i, m in enumerate(masks)
    ]
    if op in ("maximum", "minimum"):
        function = "Max" if op == "maximum" else "Min"
        output, output_mask = tensors[0], steps[0]
        for index, (x, mask) in enumerate(zip(tensors[1:], steps[1:])):
            hint = f"{prefix}/{index}"
            if mask is not None:
                x = builder.one("Where", [mask, x, output], f"{hint}/x")
            if output_mask is not None:
                output = builder.one("Where", [output_mask, output, x], f"{hint}/out")
            if mask is not None and output_mask is not None:
                output_mask = builder.one("Or", [output_mask, mask], f"{hint}/m")
            else:
                output_mask = None
            output = builder.one(function, [output, x], hint)
        return output
    if op == "multiply" and keras3:
        kept = None
        values = []
        for index, (x, mask) in enumerate(zip(tensors, steps)):
            if mask is not None:
                x = builder.one("Where", [mask, x, scalar(builder, 1.0)], f"{prefix}/one{index}")
                kept = mask if kept is None else builder.one("Or", [kept, mask], f"{prefix}/k")
            values.append(x)
        output = values[0]
        for x in values[1:]:
            output = builder.one("Mul", [output, x], f"{prefix}/mul")
        if all(m is not None for m in steps) and kept is not None:
            output = builder.one("Where", [kept, output, scalar(builder, 0.0)], prefix)
        return output
    if op == "subtract":
        return builder.one("Sub", tensors, prefix)
    if op == "divide":
        return builder.one("Div", tensors, prefix)
    if op == "multiply":
        return (
            builder.one("Mul", tensors, prefix)
            if len(tensors) == 2
            else _fold(builder, "Mul", tensors, prefix)
        )
    total = builder.one("Sum", tensors, f"{prefix}/sum")
    if op == "average":
        return builder.one("Div", [total, scalar(builder, float(len(tensors)))], prefix)
    return total


def _fold(builder: GraphBuilder, op: str, tensors: list[str], prefix: str) -> str:
    output = tensors[0]
    for x in tensors[1:]:
        output = builder.one(op, [output, x], prefix)
    return output


def emit_merge(
    builder: GraphBuilder,
    record: LayerRecord,
    tensors: list[str],
    masks: list[str | None],
    combined_mask: Callable[..., str | None],
) -> Emitted:
    """A merge layer's output, and its mask as ``combined_mask`` joins masks (Concatenate's)."""
    y = _merge_values(builder, record, tensors, masks)
    return y, combined_mask(builder, record, tensors, masks)


def emit_time_distributed(
    builder: GraphBuilder,
    record: LayerRecord,
    x: str,
    mask: str | None,
    emit_inner: Callable[[GraphBuilder, LayerRecord, str], str],
) -> Emitted:
    """A ``TimeDistributed`` layer: ``emit_inner`` runs the wrapped layer on ``x`` with its
    batch and time axes merged into one."""
    prefix, inner = record.name, record.options["layer"]
    shape = builder.one("Shape", [x], f"{prefix}/shape")
    batch_time = builder.one(
        "Slice", [shape, builder.ints("start0", [0]), builder.ints("end2", [2])], f"{prefix}/bt"
    )
    rest = builder.one(
        "Slice", [shape, builder.ints("end2", [2]), builder.ints("end_max", [_END])], f"{prefix}/r"
    )
    merged_shape = builder.one("Concat", [builder.ints("minus1", [-1]), rest], prefix, axis=0)
    merged = builder.one("Reshape", [x, merged_shape], f"{prefix}/merged")
    y = emit_inner(builder, inner, merged)
    y_shape = builder.one("Shape", [y], f"{prefix}/y_shape")
    y_rest = builder.one(
        "Slice", [y_shape, builder.ints("start1", [1]), builder.ints("end_max", [_END])], prefix
    )
    split = builder.one("Concat", [batch_time, y_rest], f"{prefix}/split_shape", axis=0)
    return builder.one("Reshape", [y, split], prefix), mask


def shape_emitters() -> dict[str, Emitter]:
    """The emitters of this family's single-input kinds (``TimeDistributed`` apart: it runs
    the emitter of the layer it wraps, :func:`emit_time_distributed`)."""

    def repeat(b: GraphBuilder, r: LayerRecord, x: str, m: str | None) -> Emitted:
        unsqueezed = b.one("Unsqueeze", [x, b.ints("axes1", [1])], f"{r.name}/unsqueezed")
        repeats = b.ints(f"{r.name}/repeats", [1, int(r.options["n"]), 1])
        return b.one("Expand", [unsqueezed, repeats], r.name), None

    def prelu(b: GraphBuilder, r: LayerRecord, x: str, m: str | None) -> Emitted:
        alpha = b.constant(f"{r.name}/alpha", r.weights["alpha"].astype(b.float_dtype))
        return b.one("PRelu", [x, alpha], r.name), m

    def softmax(b: GraphBuilder, r: LayerRecord, x: str, m: str | None) -> Emitted:
        op = "LogSoftmax" if r.options["log"] else "Softmax"
        return b.one(op, [x], r.name, axis=int(r.options["axis"])), m

    return {
        "permute": lambda b, r, x, m: (
            b.one("Transpose", [x], r.name, perm=[0, *r.options["dims"]]),
            None,
        ),
        "repeat_vector": repeat,
        "relu": lambda b, r, x, m: (_relu(b, r, x), m),
        "elu": lambda b, r, x, m: (b.one("Elu", [x], r.name, alpha=float(r.options["alpha"])), m),
        "prelu": prelu,
        "softmax": softmax,
    }


def shape_refusals(
    graph: ModelGraph, ranks: Mapping[str, int], exported: Collection[str]
) -> list[str]:
    """Why layers of this family in ``graph`` are not exported (empty when all are);
    ``exported``: the kinds a ``TimeDistributed`` can wrap."""
    refusals = []
    for record in graph.layers:
        where = f"layer {record.name!r} ({record.class_name})"
        masked = any(graph.masked(name) for name in record.inputs)
        if record.kind == "merge" and len({ranks[name] for name in record.inputs}) > 1:
            refusals.append(f"{where}: inputs of ranks {[ranks[n] for n in record.inputs]}")
        if record.kind == "softmax" and masked:
            refusals.append(f"{where}: a Softmax layer under a mask")
        inner = record.options.get("layer") if record.kind == "time_distributed" else None
        if inner is not None and masked and inner.kind in MASK_READERS:
            refusals.append(f"{where}: a wrapped {inner.class_name} reading a mask")
        if inner is not None and inner.kind not in exported:
            refusals.append(f"{where}: a wrapped {inner.class_name} is not exported per step")
    return refusals


__all__ = [
    "emit_merge",
    "emit_time_distributed",
    "shape_emitters",
    "shape_refusals",
]
