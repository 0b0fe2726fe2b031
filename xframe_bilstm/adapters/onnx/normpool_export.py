"""Normalization and pooling records exported as standard ONNX operators.

- ``BatchNormalization`` (inference) with the channel axis moved to axis 1 by
  ``Transpose`` where Keras keeps it elsewhere; no scale or offset are ones and zeros.
- ``LayerNormalization`` (opset 17 on) where Keras normalizes the last axes; otherwise
  (earlier opsets, other axes) its definition in ``ReduceMean``, ``Sub``, ``Mul``,
  ``Sqrt`` and ``Div``.
- ``GroupNormalization`` as its definition: the channels (moved to axis 1) reshaped to
  (B, groups, rest), each group normalized as above, reshaped back, then scaled and shifted
  per channel (ONNX's own ``GroupNormalization`` changed its scale's shape in opset 21).
- ``MaxPool``/``AveragePool`` on (B, C, ...) (``Transpose`` around them for channels-last):
  ``auto_pad="SAME_UPPER"`` is TensorFlow's ``same`` (the extra pad at the end), and the
  average leaves the padding out of its count (``count_include_pad=0``), as TensorFlow.
- Global pools are ``ReduceMax``/``ReduceMean`` over the spatial axes; a masked average
  sums the valid steps and divides by their count.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...graph import LayerRecord
from .builder import GraphBuilder

KINDS = ("batch_norm", "layer_norm", "group_norm", "pool", "global_pool")
_LAYER_NORMALIZATION_OPSET = 17
_REDUCE_AXES_INPUT = 18  # ReduceMax and ReduceMean take their axes as an input from here
_POOL_OPS = {"max": "MaxPool", "average": "AveragePool"}


def export_normpool(
    builder: GraphBuilder, record: LayerRecord, x: str, mask: str | None, rank: int
) -> tuple[str, str | None]:
    """The output and mask of a normalization or pooling layer reading ``x`` of ``rank``.

    Normalizations pass the mask on, as Keras's layers do; pools end it.
    """
    if record.kind == "batch_norm":
        return _batch_norm(builder, record, x, rank), mask
    if record.kind == "layer_norm":
        return _layer_norm(builder, record, x, rank), mask
    if record.kind == "group_norm":
        return _group_norm(builder, record, x, rank), mask
    if record.kind == "pool":
        return _pool(builder, record, x, rank), None
    return _global_pool(builder, record, x, mask, rank), None


def _weight(record: LayerRecord, key: str, default: float) -> np.ndarray:
    """A weight in the graph's float dtype, or ``default`` of the shape the others have."""
    shape = next(iter(record.weights.values())).shape
    array = record.weights.get(key)
    return np.full(shape, default) if array is None else np.asarray(array, np.float64)


def _constant(builder: GraphBuilder, record: LayerRecord, key: str, array: np.ndarray) -> str:
    return builder.constant(f"{record.name}/{key}", array.astype(builder.float_dtype))


def _to_channels_first(builder: GraphBuilder, x: str, axis: int, rank: int, hint: str) -> str:
    if axis == 1:
        return x
    perm = [0, axis, *(a for a in range(1, rank) if a != axis)]
    return builder.one("Transpose", [x], f"{hint}/channels_first", perm=perm)


def _from_channels_first(builder: GraphBuilder, y: str, axis: int, rank: int, hint: str) -> str:
    if axis == 1:
        return y
    order = [0, axis, *(a for a in range(1, rank) if a != axis)]
    return builder.one("Transpose", [y], hint, perm=[order.index(a) for a in range(rank)])


def _batch_norm(builder: GraphBuilder, record: LayerRecord, x: str, rank: int) -> str:
    axis, prefix = int(record.options["axis"]) % rank, record.name
    parameters = [
        _constant(builder, record, key, _weight(record, key, default))
        for key, default in (
            ("gamma", 1.0),
            ("beta", 0.0),
            ("moving_mean", 0),
            ("moving_variance", 1),
        )
    ]
    channels_first = _to_channels_first(builder, x, axis, rank, prefix)
    epsilon = float(record.options["epsilon"])
    hint = prefix if axis == 1 else f"{prefix}/normalized"
    y = builder.one("BatchNormalization", [channels_first, *parameters], hint, epsilon=epsilon)
    return _from_channels_first(builder, y, axis, rank, prefix)


def _reduce(
    builder: GraphBuilder, op: str, x: str, axes: Sequence[int], keepdims: bool, hint: str
) -> str:
    """``op`` over ``axes``, given as an attribute or an input as ``op`` takes them."""
    since = 13 if op == "ReduceSum" else _REDUCE_AXES_INPUT
    if builder.opset >= since:
        axes_name = builder.ints("axes" + "_".join(map(str, axes)), list(axes))
        return builder.one(op, [x, axes_name], hint, keepdims=int(keepdims))
    return builder.one(op, [x], hint, axes=list(axes), keepdims=int(keepdims))


def _layer_norm(builder: GraphBuilder, record: LayerRecord, x: str, rank: int) -> str:
    axes = sorted({int(axis) % rank for axis in record.options["axis"]})
    prefix, epsilon = record.name, float(record.options["epsilon"])
    trailing = axes == list(range(axes[0], rank))
    if trailing and builder.opset >= _LAYER_NORMALIZATION_OPSET and record.weights:
        scale = _constant(builder, record, "gamma", _weight(record, "gamma", 1.0))
        offset = _constant(builder, record, "beta", _weight(record, "beta", 0.0))
        return builder.one(
            "LayerNormalization", [x, scale, offset], prefix, axis=axes[0], epsilon=epsilon
        )
    y = _normalized(builder, x, axes, epsilon, prefix)
    for key, op in (("gamma", "Mul"), ("beta", "Add")):
        if key in record.weights:
            shape = [
                record.weights[key].shape[axes.index(a)] if a in axes else 1 for a in range(rank)
            ]
            weight = _constant(builder, record, key, record.weights[key].reshape(shape))
            y = builder.one(op, [y, weight], f"{prefix}/{key}")
    return builder.one("Identity", [y], prefix)


def _normalized(
    builder: GraphBuilder, x: str, axes: Sequence[int], epsilon: float, prefix: str
) -> str:
    """``(x - mean) / sqrt(variance + epsilon)``, the statistics over ``axes``."""
    mean = _reduce(builder, "ReduceMean", x, axes, True, f"{prefix}/mean")
    centered = builder.one("Sub", [x, mean], f"{prefix}/centered")
    square = builder.one("Mul", [centered, centered], f"{prefix}/square")
    variance = _reduce(builder, "ReduceMean", square, axes, True, f"{prefix}/variance")
    eps = builder.constant(f"{prefix}/epsilon", np.asarray(epsilon, builder.float_dtype))
    deviation = builder.one(
        "Sqrt", [builder.one("Add", [variance, eps], f"{prefix}/var_eps")], f"{prefix}/deviation"
    )
    return builder.one("Div", [centered, deviation], f"{prefix}/normalized")


def _group_norm(builder: GraphBuilder, record: LayerRecord, x: str, rank: int) -> str:
    axis, prefix = int(record.options["axis"]) % rank, record.name
    channels_first = _to_channels_first(builder, x, axis, rank, prefix)
    groups = builder.ints(f"{prefix}/groups", [0, int(record.options["groups"]), -1])
    grouped = builder.one("Reshape", [channels_first, groups], f"{prefix}/grouped")
    epsilon = float(record.options["epsilon"])
    normalized = _normalized(builder, grouped, [2], epsilon, prefix)
    shape = builder.one("Shape", [channels_first], f"{prefix}/shape")
    y = builder.one("Reshape", [normalized, shape], f"{prefix}/ungrouped")
    for key, op in (("gamma", "Mul"), ("beta", "Add")):
        if key in record.weights:
            per_channel = record.weights[key].reshape([-1] + [1] * (rank - 2))
            y = builder.one(
                op, [y, _constant(builder, record, key, per_channel)], f"{prefix}/{key}"
            )
    y = _from_channels_first(builder, y, axis, rank, f"{prefix}/channels")
    return builder.one("Identity", [y], prefix)


def _pool(builder: GraphBuilder, record: LayerRecord, x: str, rank: int) -> str:
    options, prefix = record.options, record.name
    channel_axis = rank - 1 if options["data_format"] == "channels_last" else 1
    channels_first = _to_channels_first(builder, x, channel_axis, rank, prefix)
    attributes: dict[str, object] = {
        "kernel_shape": list(options["pool_size"]),
        "strides": list(options["strides"]),
        "auto_pad": "SAME_UPPER" if options["padding"] == "same" else "VALID",
    }
    if options["op"] == "average":
        attributes["count_include_pad"] = 0
    hint = prefix if channel_axis == 1 else f"{prefix}/pooled"
    y = builder.one(_POOL_OPS[str(options["op"])], [channels_first], hint, **attributes)
    return _from_channels_first(builder, y, channel_axis, rank, prefix)


def _global_pool(
    builder: GraphBuilder, record: LayerRecord, x: str, mask: str | None, rank: int
) -> str:
    options, prefix = record.options, record.name
    channels_first = options.get("data_format", "channels_last") == "channels_first"
    axes = list(range(2, rank)) if channels_first else list(range(1, rank - 1))
    keep = bool(options["keepdims"])
    if options["op"] == "max":
        return _reduce(builder, "ReduceMax", x, axes, keep, prefix)
    if mask is None:
        return _reduce(builder, "ReduceMean", x, axes, keep, prefix)
    # A masked (B, T) average: the valid steps' sum over their count, as Keras.
    valid = builder.one(
        "Unsqueeze",
        [mask, builder.ints(f"axes{1 if channels_first else 2}", [1 if channels_first else 2])],
        f"{prefix}/valid",
    )
    zero = builder.constant("zero_float", np.zeros((), builder.float_dtype))
    kept = builder.one("Where", [valid, x, zero], f"{prefix}/kept")
    total = _reduce(builder, "ReduceSum", kept, axes, keep, f"{prefix}/total")
    to = int(builder.onnx.helper.np_dtype_to_tensor_dtype(builder.float_dtype))
    weights = builder.one("Cast", [valid], f"{prefix}/weights", to=to)
    count = _reduce(builder, "ReduceSum", weights, axes, keep, f"{prefix}/count")
    return builder.one("Div", [total, count], prefix)


__all__ = ["KINDS", "export_normpool"]
