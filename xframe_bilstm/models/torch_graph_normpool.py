"""Torch normalization and pooling children read as the Keras layer records they compute.

torch's layout is recorded, not rewritten: ``BatchNorm1d/2d`` normalize axis 1
(``axis=1``), pools read (B, C, L) or (B, C, H, W) (``data_format="channels_first"``),
``LayerNorm`` normalizes the last axes, ``GroupNorm`` groups of channels on axis 1 and
``InstanceNorm1d/2d`` each channel (one group per channel; with running statistics at
inference, a ``BatchNorm``'s computation). What Keras cannot compute the same way is refused
by name: a ``BatchNorm`` in training mode or without running statistics (batch
statistics), ``ceil_mode``, ``dilation``, ``return_indices``, ``divisor_override``, padding
other than TensorFlow's ``same``, and adaptive pools to sizes other than 1 (a global pool)
or None (an axis kept: ``AdaptiveAvgPool2d((None, 1))`` is the mean over the last axis).
"""

from __future__ import annotations

from typing import Any

from .._imports import require
from ..errors import UnsupportedFeatureError
from ..graph import LayerRecord

_FIRST = "start with an Embedding, a recurrent module, a Linear or a normalization"
SUPPORTED = (
    "BatchNorm1d",
    "BatchNorm2d",
    "LayerNorm",
    "GroupNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "MaxPool1d",
    "MaxPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "AdaptiveAvgPool1d(1)",
    "AdaptiveAvgPool2d(1)",
    "AdaptiveMaxPool1d(1)",
    "AdaptiveMaxPool2d(1)",
)


def _types(nn: Any) -> tuple[type, ...]:
    return (
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.InstanceNorm1d,
        nn.InstanceNorm2d,
        nn.MaxPool1d,
        nn.MaxPool2d,
        nn.AvgPool1d,
        nn.AvgPool2d,
        nn.AdaptiveAvgPool1d,
        nn.AdaptiveAvgPool2d,
        nn.AdaptiveMaxPool1d,
        nn.AdaptiveMaxPool2d,
    )


def is_normpool(child: Any) -> bool:
    """Whether ``child`` is a torch normalization or pooling module read here.

    Example:
        >>> import torch
        >>> is_normpool(torch.nn.MaxPool1d(2)), is_normpool(torch.nn.Linear(2, 2))
        (True, False)
    """
    return isinstance(child, _types(require("torch").nn))


def _one_dimensional(child: Any, nn: Any) -> bool:
    return isinstance(
        child, (nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)
    )


def input_options(children: list[tuple[str, Any]]) -> dict[str, Any] | None:
    """The input's ``shape`` and ``dtype`` when a normalization or pool comes first, or None.

    ``BatchNorm1d`` reads (B, C, L) when a 1-D pool follows it and (B, C) otherwise;
    ``BatchNorm2d`` and ``InstanceNorm2d`` (B, C, H, W); ``GroupNorm`` and
    ``InstanceNorm1d`` (B, C, L); ``LayerNorm`` (B, T, F) for ``normalized_shape=(F,)``,
    (B, *normalized_shape) otherwise. A pool first does not say how many channels there
    are, and is refused.
    """
    nn = require("torch").nn
    name, first = children[0]
    if isinstance(first, nn.BatchNorm1d):
        sequence = any(_one_dimensional(child, nn) for _, child in children[1:])
        shape: tuple[int | None, ...] = (
            (first.num_features, None) if sequence else (first.num_features,)
        )
    elif isinstance(first, (nn.BatchNorm2d, nn.InstanceNorm2d)):
        shape = (first.num_features, None, None)
    elif isinstance(first, nn.InstanceNorm1d):
        shape = (first.num_features, None)
    elif isinstance(first, nn.GroupNorm):
        shape = (first.num_channels, None)
    elif isinstance(first, nn.LayerNorm):  # one axis: features of each step of a sequence
        normalized = tuple(first.normalized_shape)
        shape = (None, *normalized) if len(normalized) == 1 else normalized
    elif is_normpool(first):
        raise UnsupportedFeatureError(
            f"the first child {name!r} ({type(first).__name__}) does not fix the input's "
            f"channels; {_FIRST}"
        )
    else:
        return None
    return {"shape": shape, "dtype": "float32"}


def normpool_records(name: str, child: Any, previous: str) -> list[LayerRecord]:
    """The layer record of one normalization or pooling child reading ``previous``."""
    nn = require("torch").nn
    kind = type(child).__name__
    where = f"child {name!r} ({kind})"
    if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
        options, weights = _batch_norm(child, where)
        return [LayerRecord(name, "batch_norm", kind, (previous,), options, weights)]
    if isinstance(child, nn.LayerNorm):
        axes = tuple(range(-len(child.normalized_shape), 0))
        options = {"axis": axes, "epsilon": float(child.eps)}
        weights = _affine(child)
        return [LayerRecord(name, "layer_norm", kind, (previous,), options, weights)]
    if isinstance(child, (nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d)):
        return [_group_norm(name, child, previous, nn, where)]
    adaptive = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
    if isinstance(child, (*adaptive, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)):
        sizes = child.output_size if isinstance(child.output_size, tuple) else (child.output_size,)
        if None in sizes and set(sizes) <= {None, 1}:  # (None, 1): one axis pooled, kept
            is_max = isinstance(child, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d))
            axes = tuple(axis for axis, size in enumerate(sizes, start=2) if size == 1)
            options = {"op": "max" if is_max else "mean", "axes": axes, "keepdims": True}
            return [LayerRecord(name, "reduce", kind, (previous,), options)]
        return [LayerRecord(name, "global_pool", kind, (previous,), _adaptive(child, nn, where))]
    return [LayerRecord(name, "pool", kind, (previous,), _pool(child, nn, where))]


def _affine(child: Any) -> dict[str, Any]:
    from ..adapters.torch import tensor_to_numpy

    weights = {}
    if child.weight is not None:
        weights["gamma"] = tensor_to_numpy(child.weight.detach())
    if child.bias is not None:
        weights["beta"] = tensor_to_numpy(child.bias.detach())
    return weights


def _batch_norm(child: Any, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from ..adapters.torch import tensor_to_numpy

    if child.training:
        raise UnsupportedFeatureError(
            f"{where} is in training mode, where it normalizes by the batch's statistics; "
            "call .eval() on the module to port its running statistics"
        )
    if child.running_mean is None or child.running_var is None:
        raise UnsupportedFeatureError(
            f"{where} has track_running_stats=False: it always normalizes by the batch's "
            "statistics, which Keras's BatchNormalization does not do at inference"
        )
    weights = _affine(child)
    weights["moving_mean"] = tensor_to_numpy(child.running_mean)
    weights["moving_variance"] = tensor_to_numpy(child.running_var)
    return {"axis": 1, "epsilon": float(child.eps)}, weights


def _group_norm(name: str, child: Any, previous: str, nn: Any, where: str) -> LayerRecord:
    """A ``GroupNorm``, or an ``InstanceNorm`` (a group per channel, or with running
    statistics at inference the ``BatchNorm`` computation)."""
    kind = type(child).__name__
    if isinstance(child, nn.GroupNorm):
        groups, weights = int(child.num_groups), _affine(child)
    elif child.track_running_stats and not child.training:
        options, weights = _batch_norm(child, where)
        return LayerRecord(name, "batch_norm", kind, (previous,), options, weights)
    else:
        groups, weights = int(child.num_features), _affine(child)
    options = {"axis": 1, "groups": groups, "epsilon": float(child.eps)}
    return LayerRecord(name, "group_norm", kind, (previous,), options, weights)


def _adaptive(child: Any, nn: Any, where: str) -> dict[str, Any]:
    sizes = child.output_size if isinstance(child.output_size, tuple) else (child.output_size,)
    if any(size != 1 for size in sizes):
        raise UnsupportedFeatureError(
            f"{where}: output_size={child.output_size!r}; only output size 1 (a global "
            "pool) maps to a Keras layer"
        )
    if getattr(child, "return_indices", False):
        raise UnsupportedFeatureError(f"{where}: return_indices=True returns two tensors")
    is_max = isinstance(child, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d))
    # torch keeps the pooled axes (size 1), as Keras's keepdims=True does.
    return {"op": "max" if is_max else "average", "keepdims": True, "data_format": "channels_first"}


def _pair(value: Any, rank: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * rank


def _pool(child: Any, nn: Any, where: str) -> dict[str, Any]:
    rank = 1 if _one_dimensional(child, nn) else 2
    is_max = isinstance(child, (nn.MaxPool1d, nn.MaxPool2d))
    if child.ceil_mode:
        raise UnsupportedFeatureError(
            f"{where}: ceil_mode=True keeps partial windows at the end; Keras's pooling "
            "does not: use ceil_mode=False"
        )
    if is_max and (any(d != 1 for d in _pair(child.dilation, rank)) or child.return_indices):
        raise UnsupportedFeatureError(
            f"{where}: dilation={child.dilation!r}, return_indices={child.return_indices!r}; "
            "Keras's MaxPooling has neither"
        )
    if not is_max and getattr(child, "divisor_override", None) is not None:
        raise UnsupportedFeatureError(f"{where}: divisor_override has no Keras equivalent")
    sizes = _pair(child.kernel_size, rank)
    strides = _pair(child.stride if child.stride else child.kernel_size, rank)
    pads = _pair(child.padding, rank)
    return {
        "op": "max" if is_max else "average",
        "pool_size": sizes,
        "strides": strides,
        "padding": _padding(child, sizes, strides, pads, is_max, where),
        "data_format": "channels_first",
    }


def _padding(
    child: Any,
    sizes: tuple[int, ...],
    strides: tuple[int, ...],
    pads: tuple[int, ...],
    is_max: bool,
    where: str,
) -> str:
    """``valid`` without padding; ``same`` where torch's padding is TensorFlow's ``same``.

    With stride 1 and an odd window ``2p + 1``, TensorFlow's ``same`` pads ``p`` on both
    sides, as torch's ``padding=p``; an average must then leave the padding out of its
    count (``count_include_pad=False``), as TensorFlow does.
    """
    if not any(pads):
        return "valid"
    same = all(s == 1 and k == 2 * p + 1 for k, s, p in zip(sizes, strides, pads))
    if same and (is_max or not child.count_include_pad):
        return "same"
    if same:
        detail = "with count_include_pad=True the average counts the padding, Keras's does not"
    else:
        detail = "Keras pads only as TensorFlow's same: padding=p with stride 1, kernel 2p+1"
    raise UnsupportedFeatureError(
        f"{where}: padding={child.padding!r} with kernel_size={child.kernel_size!r}, "
        f"stride={child.stride!r}: {detail}"
    )


__all__ = ["SUPPORTED", "input_options", "is_normpool", "normpool_records"]
