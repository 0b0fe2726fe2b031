"""Attention records as standard ONNX operators (``MatMul``, ``Softmax``, ``Where``...),
computing what :mod:`xframe_bilstm.reference.attention` computes.

Masks are the (B, T) bool tensors of :mod:`.graph_export`; the scores that do not count
become a large negative number (-1e9, float16's lowest in float16) before the ``Softmax``;
``use_causal_mask`` compares two ``Range``s of the steps.
"""

from __future__ import annotations

import numpy as np

from ...graph import LayerRecord
from .builder import GraphBuilder

KINDS = ("attention", "multi_head_attention")


def _masked_score(builder: GraphBuilder) -> str:
    dtype = builder.float_dtype
    value = np.finfo(dtype).min if dtype == np.float16 else -1e9
    return builder.constant("masked_score", np.asarray(value, dtype))


def _steps(builder: GraphBuilder, x: str, prefix: str) -> str:
    """0, 1, ..., T - 1 for the time axis of ``x`` (B, T, F)."""
    shape = builder.one("Shape", [x], f"{prefix}/shape")
    steps = builder.one("Gather", [shape, builder.scalar_index(1)], f"{prefix}/steps", axis=0)
    zero, one = builder.scalar_index(0), builder.scalar_index(1)
    return builder.one("Range", [zero, steps, one], f"{prefix}/range")


def _causal(builder: GraphBuilder, query: str, value: str, prefix: str) -> str:
    """(1, Tq, Tv) bool: query step i sees value steps j <= i."""
    rows = builder.one(
        "Unsqueeze", [_steps(builder, query, f"{prefix}/q"), builder.ints("axes1", [1])], prefix
    )
    columns = builder.one(
        "Unsqueeze", [_steps(builder, value, f"{prefix}/v"), builder.ints("axes0", [0])], prefix
    )
    lower = builder.one("GreaterOrEqual", [rows, columns], f"{prefix}/causal")
    return builder.one("Unsqueeze", [lower, builder.ints("axes0", [0])], f"{prefix}/causal3")


def score_mask(
    builder: GraphBuilder, record: LayerRecord, tensors: list[str], masks: list[str | None]
) -> str | None:
    """(B or 1, Tq, Tv) bool of the scores that count, or None when all do."""
    prefix, mask = record.name, None
    rows_too = record.kind == "multi_head_attention"
    for index, key_mask in enumerate(masks[1:] if rows_too else masks[1:2]):
        if key_mask is not None:
            step = builder.one(
                "Unsqueeze", [key_mask, builder.ints("axes1", [1])], f"{prefix}/steps{index}"
            )
            mask = step if mask is None else builder.one("And", [mask, step], f"{prefix}/and")
    if rows_too and masks[0] is not None:
        rows = builder.one("Unsqueeze", [masks[0], builder.ints("axes2", [2])], f"{prefix}/rows")
        mask = rows if mask is None else builder.one("And", [mask, rows], f"{prefix}/and")
    if record.options["use_causal_mask"]:
        lower = _causal(builder, tensors[0], tensors[1], prefix)
        mask = lower if mask is None else builder.one("And", [mask, lower], f"{prefix}/and")
    return mask


def _weight(builder: GraphBuilder, record: LayerRecord, key: str, shape: list[int]) -> str:
    array = record.weights[key].astype(builder.float_dtype).reshape(shape)
    return builder.constant(f"{record.name}/{key}", array)


def _scores(builder: GraphBuilder, record: LayerRecord, query: str, key: str) -> str:
    prefix, score = record.name, record.options["score"]
    scale = _weight(builder, record, "scale", [-1]) if "scale" in record.weights else None
    if score == "dot":
        transposed = builder.one("Transpose", [key], f"{prefix}/key_t", perm=[0, 2, 1])
        scores = builder.one("MatMul", [query, transposed], f"{prefix}/scores")
        return scores if scale is None else builder.one("Mul", [scores, scale], f"{prefix}/scaled")
    q = builder.one("Unsqueeze", [query, builder.ints("axes2", [2])], f"{prefix}/q4")
    k = builder.one("Unsqueeze", [key, builder.ints("axes1", [1])], f"{prefix}/k4")
    summed = builder.one("Add", [q, k], f"{prefix}/sum")  # (B, Tq, Tv, D)
    if score == "additive":
        tanh = builder.one("Tanh", [summed], f"{prefix}/tanh")
        if scale is not None:
            tanh = builder.one("Mul", [tanh, scale], f"{prefix}/scaled")
        return _sum_last(builder, tanh, prefix)
    if scale is not None:
        summed = builder.one("Mul", [summed, scale], f"{prefix}/scaled")
    summed = _sum_last(builder, builder.one("Tanh", [summed], f"{prefix}/tanh"), prefix)
    weight = _weight(builder, record, "concat_score_weight", [1])
    return builder.one("Mul", [summed, weight], f"{prefix}/scores")


def _sum_last(builder: GraphBuilder, x: str, prefix: str) -> str:
    axes = builder.ints("axes-1", [-1])
    return builder.one("ReduceSum", [x, axes], f"{prefix}/scores", keepdims=0)


def emit_attention(
    builder: GraphBuilder, record: LayerRecord, tensors: list[str], masks: list[str | None]
) -> tuple[str, str | None]:
    """An attention layer's output and mask (the query's)."""
    if record.kind == "multi_head_attention":
        return _multi_head(builder, record, tensors, masks), masks[0]
    prefix = record.name
    query, value = tensors[0], tensors[1]
    key = tensors[2] if len(tensors) > 2 else value
    scores = _scores(builder, record, query, key)
    mask = score_mask(builder, record, tensors, masks)
    if mask is not None:
        scores = builder.one("Where", [mask, scores, _masked_score(builder)], f"{prefix}/masked")
    weights = builder.one("Softmax", [scores], f"{prefix}/weights", axis=-1)
    y = builder.one("MatMul", [weights, value], f"{prefix}/attended")
    if masks[0] is not None:
        keep = builder.one("Unsqueeze", [masks[0], builder.ints("axes2", [2])], f"{prefix}/keep")
        zero = builder.constant("zero_float", np.zeros((), builder.float_dtype))
        y = builder.one("Where", [keep, y, zero], prefix)
    return y, masks[0]


def _heads(
    builder: GraphBuilder, record: LayerRecord, x: str, name: str, dim: int, perm: list[int]
) -> str:
    """(B, T, D) projected, split into heads and transposed by ``perm`` from (B, T, N, dim)."""
    prefix, heads = f"{record.name}/{name}", int(record.options["num_heads"])
    y = builder.one(
        "MatMul", [x, _weight(builder, record, f"{name}_kernel", [-1, heads * dim])], prefix
    )
    if f"{name}_bias" in record.weights:
        y = builder.one("Add", [y, _weight(builder, record, f"{name}_bias", [-1])], prefix)
    shape = builder.ints(f"heads{heads}x{dim}", [0, 0, heads, dim])
    y = builder.one("Reshape", [y, shape], f"{prefix}/heads")
    return builder.one("Transpose", [y], f"{prefix}/transposed", perm=perm)


def _multi_head(
    builder: GraphBuilder, record: LayerRecord, tensors: list[str], masks: list[str | None]
) -> str:
    prefix, options = record.name, record.options
    key_dim, value_dim = int(options["key_dim"]), int(options["value_dim"])
    query, value = tensors[0], tensors[1]
    key = tensors[2] if len(tensors) > 2 else value
    q = _heads(builder, record, query, "query", key_dim, [0, 2, 1, 3])  # (B, N, Tq, K)
    inverse = np.asarray(1.0 / np.sqrt(key_dim), builder.float_dtype)
    q = builder.one("Mul", [q, builder.constant(f"{prefix}/inverse_sqrt", inverse)], prefix)
    k = _heads(builder, record, key, "key", key_dim, [0, 2, 3, 1])  # (B, N, K, Tv)
    v = _heads(builder, record, value, "value", value_dim, [0, 2, 1, 3])  # (B, N, Tv, V)
    scores = builder.one("MatMul", [q, k], f"{prefix}/scores")
    mask = score_mask(builder, record, tensors, masks)
    if mask is not None:
        mask = builder.one("Unsqueeze", [mask, builder.ints("axes1", [1])], f"{prefix}/mask4")
        scores = builder.one("Where", [mask, scores, _masked_score(builder)], f"{prefix}/masked")
    weights = builder.one("Softmax", [scores], f"{prefix}/weights", axis=-1)
    if mask is not None and options["masked_rows"] == "zero":
        zero = builder.constant("zero_float", np.zeros((), builder.float_dtype))
        weights = builder.one("Where", [mask, weights, zero], f"{prefix}/zeroed")
    context = builder.one("MatMul", [weights, v], f"{prefix}/context")
    context = builder.one("Transpose", [context], f"{prefix}/context_t", perm=[0, 2, 1, 3])
    heads = int(options["num_heads"])
    flat = builder.ints(f"flat{heads * value_dim}", [0, 0, heads * value_dim])
    context = builder.one("Reshape", [context, flat], f"{prefix}/merged")
    kernel = _weight(builder, record, "output_kernel", [heads * value_dim, -1])
    y = builder.one("MatMul", [context, kernel], f"{prefix}/output")
    if "output_bias" in record.weights:
        y = builder.one("Add", [y, _weight(builder, record, "output_bias", [-1])], prefix)
    return y


__all__ = ["KINDS", "emit_attention", "score_mask"]
