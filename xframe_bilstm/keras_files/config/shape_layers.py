"""Merges, permutes, repeats, ``TimeDistributed`` and the activation layers, read into records.

``UpSampling1D`` and ``UpSampling2D`` (nearest neighbours) repeat each position on their
spatial axes: a ``repeat`` record per axis repeated, the last one named as the layer.
``Rescaling`` (``x * scale + offset``) is a ``scalar_op`` record for each of the two that
changes the values, the last named as the layer. ``Dot`` of two (batch, steps, features)
tensors over their features or steps (Luong's attention scores ``Dot(axes=[2, 2])`` and
context ``Dot(axes=[2, 1])``) is a ``matmul``.

Keras 2 spellings are read as Keras 2 meant them: ``LeakyReLU(alpha)`` (Keras 3:
``negative_slope``), ``ThresholdedReLU(theta)`` (gone from Keras 3; ``ReLU(threshold)``
computes it), a merge's mask kept where every input's mask keeps it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ...cosine import KERAS2_FLOOR, KERAS3_FLOOR, dot_records
from ...errors import UnsupportedFeatureError
from ...graph import MULTI_INPUT_KINDS, SHAPE_KINDS, LayerRecord
from ..weights import WeightRef, expect_count
from .normpool import affine_weights
from .specs import KIND_BY_CLASS, LayerSpec, ModelSpec, sub_config

MERGE_OPS = {
    "Add": "add",
    "Subtract": "subtract",
    "Multiply": "multiply",
    "Average": "average",
    "Maximum": "maximum",
    "Minimum": "minimum",
    "xframe_bilstm>Divide": "divide",
}
# How a record of a layer is read: (spec, its weights, the model) -> record.
RecordReader = Callable[[LayerSpec, Callable[[LayerSpec], list[WeightRef]], ModelSpec], LayerRecord]


def shape_record(
    layer: LayerSpec, refs: list[WeightRef], spec: ModelSpec, read_record: RecordReader
) -> LayerRecord:
    """The record of a layer whose kind is in :data:`SHAPE_KINDS`.

    ``read_record`` reads the layer a ``TimeDistributed`` holds (any supported kind).
    """
    where, config, kind = spec.where(layer), layer.config, layer.kind
    if kind == "time_distributed":
        return _time_distributed(layer, refs, spec, read_record)
    if kind == "prelu":
        expect_count(refs, 1, where)
        alpha = refs[0].read(refs[0].shape, f"{where} alpha")
        shared = config.get("shared_axes")
        return LayerRecord(
            layer.name,
            kind,
            layer.class_name,
            layer.inputs,
            {"shared_axes": tuple(shared) if isinstance(shared, (list, tuple)) else ()},
            {"alpha": np.asarray(alpha)},
        )
    expect_count(refs, 0, where)
    options = _options(layer, config, spec, where)
    return LayerRecord(layer.name, kind, layer.class_name, layer.inputs, options)


def dot_layer_records(
    layer: LayerSpec, refs: list[WeightRef], spec: ModelSpec, ranks: Mapping[str, int]
) -> list[LayerRecord]:
    """The records of a ``Dot`` layer, by its inputs' ``ranks``: a ``matmul`` over axis 2
    of one of two (batch, steps, features) tensors; the dot product of two vectors, or
    with ``normalize`` their cosine similarity, (batch, 1) (:mod:`xframe_bilstm.cosine`)."""
    where, config = spec.where(layer), layer.config
    expect_count(refs, 0, where)
    axes = config.get("axes", -1)
    given = [axes, axes] if isinstance(axes, int) else list(axes)
    shape = [ranks[name] for name in layer.inputs]
    pair = [axis % rank if axis < 0 else axis for axis, rank in zip(given, shape)]
    if shape == [2, 2] and pair == [1, 1]:
        floor: float | None = KERAS3_FLOOR if spec.major >= 3 else KERAS2_FLOOR
        if not config.get("normalize"):
            floor = None
        (a, b) = layer.inputs
        return dot_records(layer.name, (a, b), 1, floor=floor, keepdims=True, class_name="Dot")
    if shape == [3, 3] and 2 in pair and set(pair) <= {1, 2} and not config.get("normalize"):
        options = {"transpose_a": pair[0] == 1, "transpose_b": pair[1] == 2}
        return [LayerRecord(layer.name, "matmul", layer.class_name, layer.inputs, options)]
    raise UnsupportedFeatureError(
        f"{where}: axes={axes!r}, normalize={config.get('normalize')!r} on tensors of ranks "
        f"{shape}; a Dot of two vectors, (batch, features), and one of two (batch, steps, "
        "features) tensors over axes 1 and 2, unnormalized, are supported"
    )


def rescaling_records(
    layer: LayerSpec, refs: list[WeightRef], spec: ModelSpec
) -> list[LayerRecord]:
    """The ``scalar_op`` records of a ``Rescaling`` layer: times ``scale``, plus ``offset``;
    with one of them per channel of the last axis, a ``batch_norm`` record computing both."""
    where, config = spec.where(layer), layer.config
    expect_count(refs, 0, where)
    scale, offset = _numbers(config.get("scale", 1.0)), _numbers(config.get("offset", 0.0))
    if not all(isinstance(v, float) for v in (scale, offset)):
        return [_per_channel_rescaling(layer, np.asarray(scale), np.asarray(offset), where)]
    ops = [("multiply", float(scale))] if scale != 1 else []
    ops += [("add", float(offset))] if offset != 0 or not ops else []
    records, previous = [], layer.inputs
    for index, (op, constant) in enumerate(ops):
        name = layer.name if index == len(ops) - 1 else f"{layer.name}_{op}"
        options = {"op": op, "constant": constant, "reverse": False}
        records.append(LayerRecord(name, "scalar_op", layer.class_name, previous, options))
        previous = (name,)
    return records


def _numbers(value: Any) -> float | np.ndarray:
    """A ``Rescaling`` value: a number, or an array (a list, or Keras's serialized numpy
    array, ``{"class_name": "__numpy__", "config": {"value": [...]}}``)."""
    if isinstance(value, Mapping) and value.get("class_name") == "__numpy__":
        value = value.get("config", {}).get("value")
    array = np.asarray(value, np.float64)
    return float(array) if array.ndim == 0 else array


def _per_channel_rescaling(
    layer: LayerSpec, scale: np.ndarray, offset: np.ndarray, where: str
) -> LayerRecord:
    """``x * scale + offset`` with a value per channel of the last axis: a ``batch_norm``."""
    try:
        shape = np.broadcast_shapes(scale.shape, offset.shape)
    except ValueError:
        shape = None
    if shape is None or any(size != 1 for size in shape[:-1]):
        raise UnsupportedFeatureError(
            f"{where}: scale of shape {scale.shape} and offset of shape {offset.shape}; "
            "numbers, or values per channel of the last axis, are supported"
        )
    channels = shape[-1]
    weights = affine_weights(
        np.broadcast_to(scale.reshape(-1), (channels,)).astype(np.float32),
        np.broadcast_to(offset.reshape(-1), (channels,)).astype(np.float32),
    )
    options = {"axis": -1, "epsilon": 0.0}
    return LayerRecord(layer.name, "batch_norm", layer.class_name, layer.inputs, options, weights)


def upsampling_records(
    layer: LayerSpec, refs: list[WeightRef], spec: ModelSpec
) -> list[LayerRecord]:
    """The ``repeat`` records of an ``UpSampling1D``/``UpSampling2D`` layer."""
    where, config = spec.where(layer), layer.config
    expect_count(refs, 0, where)
    rank = 1 if layer.class_name == "UpSampling1D" else 2
    if config.get("interpolation", "nearest") != "nearest":
        raise UnsupportedFeatureError(
            f"{where}: interpolation={config.get('interpolation')!r}; only nearest "
            "neighbours (each position repeated) are supported"
        )
    size = config.get("size", 2)
    sizes = [size] * rank if isinstance(size, int) else list(size)
    if len(sizes) != rank or not all(isinstance(n, int) and n > 0 for n in sizes):
        raise UnsupportedFeatureError(f"{where}: size={size!r}; expected {rank} positive integers")
    first = 2 if config.get("data_format") == "channels_first" else 1
    # every size 1: one repeat of one, which ends the mask as the layer does
    repeated = [(axis, n) for axis, n in enumerate(sizes, start=first) if n > 1] or [(first, 1)]
    records, previous = [], layer.inputs
    for index, (axis, repeats) in enumerate(repeated):
        name = layer.name if index == len(repeated) - 1 else f"{layer.name}_axis{axis}"
        options = {"axis": axis, "repeats": repeats}
        records.append(LayerRecord(name, "repeat", layer.class_name, previous, options))
        previous = (name,)
    return records


def _options(
    layer: LayerSpec, config: Mapping[str, Any], spec: ModelSpec, where: str
) -> dict[str, Any]:
    kind = layer.kind
    if kind == "merge":
        return {
            "op": MERGE_OPS[layer.class_name],
            "mask_combine": "all" if spec.major < 3 else "any",
        }
    if kind == "permute":
        return {"dims": tuple(int(d) for d in config["dims"])}
    if kind == "repeat_vector":
        return {"n": int(config["n"])}
    if kind == "relu":
        return _relu(layer.class_name, config)
    if kind == "elu":
        return {"alpha": float(config.get("alpha", 1.0))}
    axis = config.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise UnsupportedFeatureError(
                f"{where}: axis={list(axis)}; a softmax over one axis is supported"
            )
        axis = axis[0]
    return {"axis": int(axis), "log": False}


def _relu(class_name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    if class_name == "ThresholdedReLU":  # x where x > theta, else 0
        return {"max_value": None, "negative_slope": 0.0, "threshold": float(config["theta"])}
    if class_name == "LeakyReLU":  # Keras 2 calls the slope alpha; both default to 0.3
        slope = config.get("negative_slope", config.get("alpha", 0.3))
        return {"max_value": None, "negative_slope": float(slope), "threshold": 0.0}
    max_value = config.get("max_value")
    return {
        "max_value": None if max_value is None else float(max_value),
        "negative_slope": float(config.get("negative_slope", config.get("alpha", 0.0)) or 0.0),
        "threshold": float(config.get("threshold", 0.0) or 0.0),
    }


def _time_distributed(
    layer: LayerSpec, refs: list[WeightRef], spec: ModelSpec, read_record: RecordReader
) -> LayerRecord:
    class_name, config = sub_config(layer.config, "layer", layer, spec.source)
    kind = KIND_BY_CLASS.get(class_name, "")
    if kind in ("", "input", *MULTI_INPUT_KINDS):
        raise UnsupportedFeatureError(
            f"{spec.where(layer)}: TimeDistributed({class_name}) is not supported; it wraps "
            "any supported layer that reads one tensor"
        )
    inner_spec = LayerSpec(
        str(config.get("name", f"{layer.name}_layer")),
        class_name,
        kind,
        config,
        layer.inputs,
        layer.position,
    )
    inner = read_record(inner_spec, lambda _: refs, spec)
    if inner.kind == "dense":  # a Dense already applies to every step: kept as one layer
        options = {**inner.options, "time_distributed": True}
        return LayerRecord(
            layer.name, "dense", layer.class_name, layer.inputs, options, inner.weights
        )
    return LayerRecord(
        layer.name, "time_distributed", layer.class_name, layer.inputs, {"layer": inner}
    )


__all__ = ["MERGE_OPS", "SHAPE_KINDS", "shape_record"]
