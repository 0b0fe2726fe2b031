"""The reference of Keras's convolutions, zero padding and cropping, written plainly.

A convolution is computed from its definition, channels-last: the input is padded with
zeros as the layer's ``padding`` says (``"causal"``: the whole span before the first step;
``"same"``: TensorFlow's, the odd zero at the end), then every output position sums the
kernel's taps, ``dilation`` steps apart, over its group's input channels. A transposed
convolution adds each input step's product with every tap into the output step ``stride``
times its position plus the tap's offset, then crops its ``crops`` (a negative count at
the end adds steps no input reaches), then adds the bias. Channels-first layers move the
channel axis last and back.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..activations import numpy_activation
from ..errors import WeightShapeError


def _channels_last(x: np.ndarray, options: Mapping[str, Any]) -> np.ndarray:
    return np.moveaxis(x, 1, -1) if options["data_format"] == "channels_first" else x


def _back(y: np.ndarray, options: Mapping[str, Any]) -> np.ndarray:
    return np.moveaxis(y, -1, 1) if options["data_format"] == "channels_first" else y


def _pads(size: int, kernel: int, stride: int, dilation: int, padding: str) -> tuple[int, int]:
    span = dilation * (kernel - 1) + 1
    if padding == "causal":
        return span - 1, 0
    if padding == "valid":
        return 0, 0
    wanted = (size + stride - 1) // stride  # "same": ceil(size / stride) outputs
    total = max(0, (wanted - 1) * stride + span - size)
    before = total // 2
    return before, total - before


def conv_reference(
    options: Mapping[str, Any],
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    dtype: type,
    name: str = "conv",
) -> np.ndarray:
    """A ``conv`` record's output on ``x`` (Keras layout), before its activation.

    Example:
        >>> options = {"rank": 1, "kernel_size": (2,), "strides": (1,), "padding": "causal",
        ...            "dilation_rate": (1,), "groups": 1, "data_format": "channels_last"}
        >>> kernel = np.array([[[1.0]], [[10.0]]])   # y[t] = x[t-1] + 10 x[t]
        >>> conv_reference(options, {"kernel": kernel}, np.array([[[1.0], [2.0]]]), float)[0, :, 0]
        array([10., 21.])
    """
    x = _channels_last(np.asarray(x, dtype), options)
    kernel: np.ndarray = np.asarray(weights["kernel"], dtype)
    rank, groups = int(options["rank"]), int(options["groups"])
    spatial = x.shape[1:-1]
    pads = [
        _pads(size, k, s, d, str(options["padding"]))
        for size, k, s, d in zip(
            spatial, options["kernel_size"], options["strides"], options["dilation_rate"]
        )
    ]
    x = np.pad(x, [(0, 0), *pads, (0, 0)])
    outputs = [
        (size - d * (k - 1) - 1) // s + 1
        for size, k, s, d in zip(
            x.shape[1:-1], options["kernel_size"], options["strides"], options["dilation_rate"]
        )
    ]
    if min(outputs) < 1:
        raise WeightShapeError(
            f"layer {name!r}: its padded input {x.shape[1:-1]} is shorter than its kernel "
            f"{tuple(options['kernel_size'])} with dilation {tuple(options['dilation_rate'])}"
            "; give the model longer inputs"
        )
    channels, filters = x.shape[-1], kernel.shape[-1]
    # (B, *out, groups, in/groups) against (groups, in/groups, filters/groups) per tap.
    grouped = kernel.reshape(*kernel.shape[:rank], channels // groups, groups, filters // groups)
    y = np.zeros((x.shape[0], *outputs, groups, filters // groups), dtype)
    for tap in itertools.product(*(range(k) for k in options["kernel_size"])):
        window = tuple(
            slice(t * d, t * d + (n - 1) * s + 1, s)
            for t, d, s, n in zip(tap, options["dilation_rate"], options["strides"], outputs)
        )
        taken = x[(slice(None), *window)].reshape(*x.shape[:1], *outputs, groups, -1)
        y += np.einsum("...gc,cgf->...gf", taken, grouped[tap])
    y = y.reshape(*y.shape[:-2], filters)
    if "bias" in weights:
        y = y + np.asarray(weights["bias"], dtype)
    return _back(y, options)


def conv_transpose_reference(
    options: Mapping[str, Any], weights: Mapping[str, np.ndarray], x: np.ndarray, dtype: type
) -> np.ndarray:
    """A ``conv_transpose`` record's output on ``x`` (Keras layout), before its activation.

    Example:
        >>> options = {"kernel_size": (2,), "strides": (2,), "dilation_rate": (1,),
        ...            "crops": ((0, -1),), "data_format": "channels_last"}
        >>> kernel = np.array([[[1.0]], [[10.0]]])   # each step becomes x, 10 x
        >>> x = np.array([[[1.0], [2.0]]])
        >>> conv_transpose_reference(options, {"kernel": kernel}, x, float)[0, :, 0]
        array([ 1., 10.,  2., 20.,  0.])
    """
    x = _channels_last(np.asarray(x, dtype), options)
    kernel: np.ndarray = np.asarray(weights["kernel"], dtype)  # (*k, filters, channels)
    sizes, strides = x.shape[1:-1], options["strides"]
    dilations = options["dilation_rate"]
    full = [
        (n - 1) * s + d * (k - 1) + 1
        for n, s, d, k in zip(sizes, strides, dilations, options["kernel_size"])
    ]
    y = np.zeros((x.shape[0], *full, kernel.shape[-2]), dtype)
    for tap in itertools.product(*(range(k) for k in options["kernel_size"])):
        window = tuple(
            slice(t * d, t * d + (n - 1) * s + 1, s)
            for t, d, s, n in zip(tap, dilations, strides, sizes)
        )
        y[(slice(None), *window)] += np.einsum("...c,fc->...f", x, kernel[tap])
    for axis, (before, after) in enumerate(options["crops"], start=1):
        y = np.moveaxis(y, axis, 0)
        y = np.concatenate([y[before:], np.zeros((max(-after, 0), *y.shape[1:]), dtype)])
        y = np.moveaxis(y[: y.shape[0] - max(after, 0)], 0, axis)
    if "bias" in weights:
        y = y + np.asarray(weights["bias"], dtype)
    return _back(y, options)


def activate(name: str, x: np.ndarray) -> np.ndarray:
    """A Keras activation on the last axis (``softmax`` included)."""
    if name == "softmax":
        shifted = np.exp(x - x.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    return numpy_activation(name)(x)


def pad_or_crop_reference(kind: str, options: Mapping[str, Any], x: np.ndarray) -> np.ndarray:
    """A ``zero_padding`` or ``cropping`` record's output on ``x`` (Keras layout).

    Example:
        >>> x = np.arange(4.0).reshape(1, 4, 1)
        >>> options = {"cropping": ((1, 2),), "data_format": "channels_last"}
        >>> pad_or_crop_reference("cropping", options, x)[0, :, 0]
        array([1.])
    """
    x = _channels_last(np.asarray(x), options)
    if kind == "zero_padding":
        y = np.pad(x, [(0, 0), *options["padding"], (0, 0)])
    else:
        window = tuple(slice(a, size - b) for (a, b), size in zip(options["cropping"], x.shape[1:]))
        y = x[(slice(None), *window)]
    return _back(y, options)


__all__ = ["activate", "conv_reference", "conv_transpose_reference", "pad_or_crop_reference"]
