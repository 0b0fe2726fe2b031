"""Normalization and pooling layers in the reference, written from Keras's definitions.

- ``BatchNormalization`` at inference: ``(x - moving_mean) / sqrt(moving_variance +
  epsilon) * gamma + beta`` along its channel axis.
- ``LayerNormalization``: each sample's mean and (population) variance over ``axis``.
- ``GroupNormalization``: the channels split into ``groups`` of consecutive channels, each
  sample's mean and variance taken per group over its channels and every other axis.
- Pooling windows as TensorFlow places them: ``valid`` keeps whole windows only; ``same``
  gives ``ceil(size / stride)`` outputs, padding ``total // 2`` before and the rest after,
  and a window never reads the padding (the average divides by the values it covers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..graph import LayerRecord


def _channel_shape(ndim: int, axes: tuple[int, ...], sizes: tuple[int, ...]) -> tuple[int, ...]:
    """The shape that broadcasts weights of ``sizes`` along ``axes`` of an ``ndim`` array."""
    shape = [1] * ndim
    for axis, size in zip(axes, sizes):
        shape[axis] = size
    return tuple(shape)


def batch_norm(record: LayerRecord, x: np.ndarray, dtype: type) -> np.ndarray:
    """Inference-time batch normalization with the moving statistics."""
    x = x.astype(dtype)
    axis = int(record.options["axis"]) % x.ndim
    weights: dict[str, np.ndarray] = {
        key: value.astype(dtype) for key, value in record.weights.items()
    }
    shape = _channel_shape(x.ndim, (axis,), (x.shape[axis],))
    scale = 1.0 / np.sqrt(weights["moving_variance"] + np.asarray(record.options["epsilon"], dtype))
    y = (x - weights["moving_mean"].reshape(shape)) * scale.reshape(shape)
    if "gamma" in weights:
        y = y * weights["gamma"].reshape(shape)
    if "beta" in weights:
        y = y + weights["beta"].reshape(shape)
    return np.asarray(y, dtype)


def layer_norm(record: LayerRecord, x: np.ndarray, dtype: type) -> np.ndarray:
    """Each sample normalized over ``axis``, then scaled and shifted."""
    x = x.astype(dtype)
    axes = tuple(sorted({int(axis) % x.ndim for axis in record.options["axis"]}))
    mean = x.mean(axis=axes, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(variance + np.asarray(record.options["epsilon"], dtype))
    shape = _channel_shape(x.ndim, axes, tuple(x.shape[axis] for axis in axes))
    if "gamma" in record.weights:
        y = y * record.weights["gamma"].astype(dtype).reshape(shape)
    if "beta" in record.weights:
        y = y + record.weights["beta"].astype(dtype).reshape(shape)
    return np.asarray(y, dtype)


def group_norm(record: LayerRecord, x: np.ndarray, dtype: type) -> np.ndarray:
    """Each sample normalized per group of channels, then scaled and shifted per channel."""
    x = x.astype(dtype)
    axis, groups = int(record.options["axis"]) % x.ndim, int(record.options["groups"])
    channels_first = np.moveaxis(x, axis, 1)
    grouped = channels_first.reshape(x.shape[0], groups, -1)
    mean = grouped.mean(axis=2, keepdims=True)
    variance = ((grouped - mean) ** 2).mean(axis=2, keepdims=True)
    deviation = np.sqrt(variance + np.asarray(record.options["epsilon"], dtype))
    normalized = ((grouped - mean) / deviation).reshape(channels_first.shape)
    y = np.moveaxis(normalized, 1, axis)
    shape = _channel_shape(x.ndim, (axis,), (x.shape[axis],))
    if "gamma" in record.weights:
        y = y * record.weights["gamma"].astype(dtype).reshape(shape)
    if "beta" in record.weights:
        y = y + record.weights["beta"].astype(dtype).reshape(shape)
    return np.asarray(y, dtype)


def same_padding(size: int, window: int, stride: int) -> tuple[int, int]:
    """TensorFlow's ``same`` padding of one axis: (before, after).

    Example:
        >>> same_padding(5, 2, 2), same_padding(4, 3, 1)
        ((0, 1), (1, 1))
    """
    outputs = -(-size // stride)
    total = max((outputs - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def pool(options: Mapping[str, Any], x: np.ndarray, dtype: type) -> np.ndarray:
    """``MaxPooling``/``AveragePooling`` 1-D or 2-D, TensorFlow's windows and padding."""
    channels_first = options["data_format"] == "channels_first"
    x = np.moveaxis(x.astype(dtype), 1, -1) if channels_first else x.astype(dtype)
    sizes, strides = tuple(options["pool_size"]), tuple(options["strides"])
    spatial = tuple(range(1, 1 + len(sizes)))
    pads = [(0, 0)] * x.ndim
    if options["padding"] == "same":
        for axis, window, stride in zip(spatial, sizes, strides):
            pads[axis] = same_padding(x.shape[axis], window, stride)
    valid = np.pad(np.ones(x.shape, bool), pads, constant_values=False)
    padded = np.pad(x, pads)
    windows = np.lib.stride_tricks.sliding_window_view(padded, sizes, axis=spatial)
    covered = np.lib.stride_tricks.sliding_window_view(valid, sizes, axis=spatial)
    step = (slice(None), *(slice(None, None, stride) for stride in strides))
    windows, covered = windows[step], covered[step]
    window_axes = tuple(range(x.ndim, x.ndim + len(sizes)))
    if options["op"] == "max":
        y = np.where(covered, windows, -np.inf).max(axis=window_axes)
    else:
        y = np.where(covered, windows, 0).sum(axis=window_axes) / covered.sum(axis=window_axes)
    y = np.asarray(y, dtype)
    return np.moveaxis(y, -1, 1) if channels_first else y


def global_pool(options: Mapping[str, Any], x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Global max or average over every axis but batch and channels; a masked average
    counts the valid steps only (as Keras's ``GlobalAveragePooling1D``)."""
    channels_first = options.get("data_format", "channels_last") == "channels_first"
    axes = tuple(range(2, x.ndim)) if channels_first else tuple(range(1, x.ndim - 1))
    keep = bool(options["keepdims"])
    if options["op"] == "max":
        return np.asarray(x.max(axis=axes, keepdims=keep))
    if mask is None:
        return np.asarray(x.mean(axis=axes, keepdims=keep))
    valid = np.expand_dims(mask, 1 if channels_first else -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.where(valid, x, 0).sum(axis=axes, keepdims=keep)
        return np.asarray(total / valid.sum(axis=axes, keepdims=keep))
