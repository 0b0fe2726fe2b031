"""Normalization and pooling layers read from a configuration into layer records.

``BatchNormalization`` (inference: its moving statistics), ``LayerNormalization``,
``GroupNormalization``, the 1-D and 2-D ``MaxPooling``/``AveragePooling`` layers and the
global poolings (1-D or 2-D, ``data_format`` recorded). The preprocessing layer
``Normalization``, ``(x - mean) / max(sqrt(variance), 1e-7)``, is a ``BatchNormalization``
of that denominator squared as its variance and no epsilon. Keras 2 files spell ``axis`` as a
list (``[2]``) and count it with the batch axis; the records keep Keras's own counting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import UnsupportedFeatureError, WeightShapeError
from ...graph import LayerRecord, ModelGraph
from ..weights import WeightRef, expect_count

if TYPE_CHECKING:  # specs lists these classes: importing it here would be a cycle
    from .specs import LayerSpec, ModelSpec

POOL_CLASSES = {
    "MaxPooling1D": ("max", 1),
    "MaxPool1D": ("max", 1),
    "MaxPooling2D": ("max", 2),
    "MaxPool2D": ("max", 2),
    "AveragePooling1D": ("average", 1),
    "AvgPool1D": ("average", 1),
    "AveragePooling2D": ("average", 2),
    "AvgPool2D": ("average", 2),
}
KIND_BY_CLASS = {
    "BatchNormalization": "batch_norm",
    "Normalization": "batch_norm",
    "LayerNormalization": "layer_norm",
    "GroupNormalization": "group_norm",
    **dict.fromkeys(POOL_CLASSES, "pool"),
    "GlobalMaxPooling2D": "global_pool",
    "GlobalMaxPool2D": "global_pool",
    "GlobalAveragePooling2D": "global_pool",
    "GlobalAvgPool2D": "global_pool",
}


def normpool_record(layer: LayerSpec, refs: list[WeightRef], spec: ModelSpec) -> LayerRecord:
    """The record of a normalization or (non-global) pooling layer, weights checked."""
    where = spec.where(layer)
    if layer.class_name == "Normalization":
        options, weights = _normalization(layer.config, refs, where)
    elif layer.kind == "batch_norm":
        options, weights = _batch_norm(layer.config, refs, where)
    elif layer.kind == "layer_norm":
        options, weights = _layer_norm(layer.config, refs, where)
    elif layer.kind == "group_norm":
        options, weights = _group_norm(layer.config, refs, where)
    else:
        expect_count(refs, 0, where)
        options, weights = pool_options(layer.class_name, layer.config, where), {}
    return LayerRecord(layer.name, layer.kind, layer.class_name, layer.inputs, options, weights)


def check_group_norm_masks(spec: ModelSpec, graph: ModelGraph) -> None:
    """Refuse a Keras 2 ``GroupNormalization`` reading a mask: Keras 2 broadcasts the
    (batch, steps) mask against the input to weigh its statistics, which fails in Keras
    itself (Keras 3 ignores the mask and passes it on)."""
    for layer in spec.layers:
        if spec.major < 3 and layer.kind == "group_norm" and graph.masked(layer.inputs[0]):
            raise UnsupportedFeatureError(
                f"{spec.where(layer)}: a Keras 2 GroupNormalization reading a mask, which "
                "Keras 2 itself cannot run (it broadcasts the (batch, steps) mask against "
                "the input); end the mask before it"
            )


def global_pool_options(class_name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``op``, ``keepdims`` and ``data_format`` of a ``GlobalMax/AveragePooling1D/2D``."""
    return {
        "op": "max" if "Max" in class_name else "average",
        "keepdims": bool(config.get("keepdims", False)),
        "data_format": _data_format(config),
    }


def pool_options(class_name: str, config: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The options of a ``MaxPooling``/``AveragePooling`` 1-D or 2-D layer."""
    op, rank = POOL_CLASSES[class_name]
    pool_size = _ints(config.get("pool_size", 2), rank, "pool_size", where)
    strides_given = config.get("strides")
    strides = pool_size if strides_given is None else _ints(strides_given, rank, "strides", where)
    padding = str(config.get("padding", "valid")).lower()
    if padding not in ("valid", "same"):
        raise UnsupportedFeatureError(f"{where}: padding={padding!r}; expected valid or same")
    return {
        "op": op,
        "pool_size": pool_size,
        "strides": strides,
        "padding": padding,
        "data_format": _data_format(config),
    }


def _data_format(config: Mapping[str, Any]) -> str:
    return str(config.get("data_format") or "channels_last")


def _ints(value: Any, rank: int, name: str, where: str) -> tuple[int, ...]:
    values = [value] * rank if isinstance(value, int) else list(value)
    if len(values) != rank or not all(isinstance(v, int) and v > 0 for v in values):
        raise UnsupportedFeatureError(
            f"{where}: {name}={value!r}; expected {rank} positive integer(s)"
        )
    return tuple(values)


def _axes(value: Any, where: str) -> tuple[int, ...]:
    axes = [value] if isinstance(value, int) else list(value or [])
    if not axes or not all(isinstance(axis, int) for axis in axes):
        raise UnsupportedFeatureError(f"{where}: axis={value!r}; expected integers")
    return tuple(sorted(axes))


def _affine(
    config: Mapping[str, Any], refs: list[WeightRef], shape: tuple[int, ...] | None, where: str
) -> tuple[dict[str, np.ndarray], list[WeightRef]]:
    """``gamma`` (``scale``) then ``beta`` (``center``), as Keras stores them first."""
    weights: dict[str, np.ndarray] = {}
    rest = list(refs)
    for key, option in (("gamma", "scale"), ("beta", "center")):
        if config.get(option, True):
            if not rest:
                raise WeightShapeError(f"{where}: {option}=True but no {key} weight is stored")
            ref = rest.pop(0)
            weights[key] = ref.read(shape or tuple(ref.shape), f"{where} {key}")
    return weights, rest


def _batch_norm(
    config: Mapping[str, Any], refs: list[WeightRef], where: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    axes = _axes(config.get("axis", -1), where)
    if len(axes) != 1:
        raise UnsupportedFeatureError(
            f"{where}: axis={list(axes)} normalizes over several axes; only one channel axis "
            "is supported"
        )
    for option in ("renorm", "synchronized"):
        if config.get(option):
            raise UnsupportedFeatureError(
                f"{where}: {option}=True is not supported; rebuild the layer without it"
            )
    expect_count(
        refs, 2 + bool(config.get("scale", True)) + bool(config.get("center", True)), where
    )
    if len(refs[-1].shape) != 1:
        raise WeightShapeError(f"{where}: moving_variance has shape {refs[-1].shape}; expected 1-D")
    channels = (int(refs[-1].shape[0]),)
    weights, rest = _affine(config, refs, channels, where)
    weights["moving_mean"] = rest[0].read(channels, f"{where} moving_mean")
    weights["moving_variance"] = rest[1].read(channels, f"{where} moving_variance")
    return {"axis": axes[0], "epsilon": float(config.get("epsilon", 1e-3))}, weights


_KERAS_EPSILON = 1e-7  # keras.config.epsilon(), the least a Normalization divides by


def _normalization(
    config: Mapping[str, Any], refs: list[WeightRef], where: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``Normalization``'s mean and variance (its weights, as ``adapt`` leaves them, or its
    configuration's lists) as a ``batch_norm`` record dividing by the same denominator; an
    inverted one (``invert=True``: ``x * deviation + mean``) as one of mean 0 and variance
    1, scaled by the deviation and shifted by the mean."""
    axes = _axes(config.get("axis", -1), where)
    if len(axes) != 1:
        raise UnsupportedFeatureError(
            f"{where}: axis={config.get('axis')!r}; a Normalization over one axis is supported"
        )
    if refs:  # mean, variance, count
        expect_count(refs, 3, where)
        mean = refs[0].read(tuple(refs[0].shape), f"{where} mean")
        variance = refs[1].read(tuple(refs[1].shape), f"{where} variance")
    else:
        mean = np.asarray(config.get("mean"), np.float64)
        variance = np.asarray(config.get("variance"), np.float64)
    if mean.ndim != 1 or mean.shape != variance.shape:
        raise UnsupportedFeatureError(
            f"{where}: mean of shape {mean.shape} and variance of shape {variance.shape}; "
            "one value per channel of its axis is supported"
        )
    deviation = np.maximum(np.sqrt(np.asarray(variance, np.float64)), _KERAS_EPSILON)
    dtype = np.asarray(mean).dtype
    if config.get("invert"):
        return {"axis": axes[0], "epsilon": 0.0}, affine_weights(
            deviation.astype(dtype), np.asarray(mean)
        )
    weights = {
        "moving_mean": np.asarray(mean),
        "moving_variance": (deviation**2).astype(dtype),
    }
    return {"axis": axes[0], "epsilon": 0.0}, weights


def affine_weights(scale: np.ndarray, offset: np.ndarray) -> dict[str, np.ndarray]:
    """The weights of a ``batch_norm`` record (of epsilon 0) computing ``x * scale + offset``
    per channel: mean 0 and variance 1 leave ``x`` as it is."""
    return {
        "gamma": scale,
        "beta": offset,
        "moving_mean": np.zeros_like(scale),
        "moving_variance": np.ones_like(scale),
    }


def _layer_norm(
    config: Mapping[str, Any], refs: list[WeightRef], where: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if config.get("rms_scaling"):
        raise UnsupportedFeatureError(
            f"{where}: rms_scaling=True (deprecated in Keras 3: it scales by the variance, "
            "not the root mean square) is not supported; use LayerNormalization without it"
        )
    axes = _axes(config.get("axis", -1), where)
    expect_count(refs, bool(config.get("scale", True)) + bool(config.get("center", True)), where)
    shapes: Sequence[tuple[int, ...]] = [tuple(ref.shape) for ref in refs]
    if len(set(shapes)) > 1:
        raise WeightShapeError(f"{where}: gamma and beta have different shapes {list(shapes)}")
    weights, _ = _affine(config, refs, None, where)
    return {"axis": axes, "epsilon": float(config.get("epsilon", 1e-3))}, weights


def _group_norm(
    config: Mapping[str, Any], refs: list[WeightRef], where: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    axes = _axes(config.get("axis", -1), where)
    expect_count(refs, bool(config.get("scale", True)) + bool(config.get("center", True)), where)
    weights, _ = _affine(config, refs, None, where)
    groups = int(config.get("groups", 32))
    if groups == -1:  # one group per channel, fixed when the layer is built
        if not weights:
            raise UnsupportedFeatureError(
                f"{where}: groups=-1 (one per channel) in a layer saved unbuilt and without "
                "weights does not say how many channels it has; build the model first"
            )
        groups = len(next(iter(weights.values())))
    if len(axes) != 1 or groups < 1:
        raise UnsupportedFeatureError(
            f"{where}: axis={config.get('axis')!r}, groups={groups}; expected one axis and "
            "a positive number of groups"
        )
    return {
        "axis": axes[0],
        "groups": groups,
        "epsilon": float(config.get("epsilon", 1e-3)),
    }, weights
