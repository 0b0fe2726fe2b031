"""Convolutions, zero padding and cropping read from a Keras configuration and weights.

Keras 2 and Keras 3 save these layers alike: tuples (or lists, in JSON) for the sizes,
``data_format`` resolved to a name (``None`` is read as ``"channels_last"``, Keras's
default), and ``ZeroPadding1D/2D``/``Cropping1D/2D`` with an int, a pair, or a pair per
axis. Keras 2's
``ZeroPadding1D`` has no ``data_format``: it is always channels-last.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...convolution import transpose_crops
from ...errors import UnsupportedFeatureError, WeightShapeError
from ...graph import LayerRecord
from ..legacy import activation_name
from ..weights import WeightRef, expect_count
from .specs import LayerSpec, ModelSpec

CONV_CLASSES = {
    **{"Conv1D": 1, "Convolution1D": 1, "Conv2D": 2, "Convolution2D": 2},
    # this package's channels-first convolutions, saved as Keras's are
    **{"xframe_bilstm>ChannelsFirstConv1D": 1, "xframe_bilstm>ChannelsFirstConv2D": 2},
}
TRANSPOSE_CLASSES = {
    **{"Conv1DTranspose": 1, "Convolution1DTranspose": 1},
    **{"Conv2DTranspose": 2, "Convolution2DTranspose": 2},
    # this package's, Keras's run "valid" then cropped
    **{"xframe_bilstm>Conv1DTranspose": 1, "xframe_bilstm>Conv2DTranspose": 2},
}
PADDINGS = ("valid", "same", "causal")
DATA_FORMATS = ("channels_last", "channels_first")


def sizes(value: Any, rank: int, what: str, where: str, least: int = 1) -> tuple[int, ...]:
    """``value`` (an int or ``rank`` ints) as a tuple of ``rank`` ints of at least ``least``
    (positive ones by default).

    Example:
        >>> sizes(3, 2, "strides", "layer 'c'"), sizes([2], 1, "strides", "layer 'c'")
        ((3, 3), (2,))
    """
    items = [value] * rank if isinstance(value, int) else list(value)
    if len(items) != rank or not all(isinstance(i, int) and i >= least for i in items):
        kind = "positive" if least == 1 else f"at least {least}"
        raise UnsupportedFeatureError(
            f"{where}: {what}={value!r}; expected {rank} {kind} integer(s)"
        )
    return tuple(items)


def pairs(value: Any, rank: int, what: str, where: str) -> tuple[tuple[int, int], ...]:
    """``value`` (an int, a ``(before, after)`` pair, or one per axis) as pairs per axis.

    Example:
        >>> pairs(2, 1, "padding", ""), pairs([1, 3], 1, "padding", "")
        (((2, 2),), ((1, 3),))
    """
    if isinstance(value, int):
        value = [(value, value)] * rank
    elif rank == 1 and len(value) == 2 and all(isinstance(i, int) for i in value):
        value = [value]
    items = [(i, i) if isinstance(i, int) else tuple(i) for i in value]
    if len(items) != rank or not all(
        len(pair) == 2 and all(isinstance(i, int) and i >= 0 for i in pair) for pair in items
    ):
        raise UnsupportedFeatureError(
            f"{where}: {what}={value!r}; expected non-negative (before, after) integers"
        )
    return tuple((int(a), int(b)) for a, b in items)


def data_format(config: Mapping[str, Any], where: str) -> str:
    """The layer's ``data_format``, refused by name when it is neither Keras name."""
    value = config.get("data_format") or "channels_last"
    if value not in DATA_FORMATS:
        raise UnsupportedFeatureError(
            f"{where}: data_format={value!r}; expected one of {list(DATA_FORMATS)}"
        )
    return str(value)


DEPTHWISE_CLASSES = {
    **{"DepthwiseConv1D": 1, "DepthwiseConv2D": 2},
    **{"SeparableConv1D": 1, "SeparableConvolution1D": 1},
    **{"SeparableConv2D": 2, "SeparableConvolution2D": 2},
}


def depthwise_records(
    layer: LayerSpec, refs: list[WeightRef], spec: ModelSpec
) -> list[LayerRecord]:
    """The ``conv`` records of a ``DepthwiseConv1D/2D`` (one convolution of a group per
    input channel, ``depth_multiplier`` filters each) or a ``SeparableConv1D/2D`` (that,
    unbiased, then a pointwise convolution), their kernels as grouped ones.

    Keras keeps a depthwise kernel as (``*k``, channels, multiplier) and orders its outputs
    channel by channel, as a grouped kernel (``*k``, 1, channels x multiplier) does.
    """
    where, config = spec.where(layer), layer.config
    rank = DEPTHWISE_CLASSES[layer.class_name]
    separable = layer.class_name.startswith("Separable")
    use_bias = bool(config.get("use_bias", True))
    expect_count(refs, 1 + separable + use_bias, where)
    kernel_size = sizes(config["kernel_size"], rank, "kernel_size", where)
    declared = tuple(refs[0].shape)
    if len(declared) != rank + 2 or declared[:rank] != kernel_size:
        raise WeightShapeError(
            f"{where}: depthwise kernel has shape {declared}; expected "
            f"({', '.join(map(str, kernel_size))}, channels, multiplier)"
        )
    channels, multiplier = declared[rank:]
    depthwise = refs[0].read(declared, f"{where} depthwise kernel")
    padding = str(config.get("padding", "valid")).lower()
    if padding not in PADDINGS[:2]:
        raise UnsupportedFeatureError(f"{where}: padding={padding!r}; expected valid or same")
    common = {"rank": rank, "data_format": data_format(config, where)}
    options = {
        **common,
        "filters": channels * multiplier,
        "kernel_size": kernel_size,
        "strides": sizes(config.get("strides", 1), rank, "strides", where),
        "padding": padding,
        "dilation_rate": sizes(config.get("dilation_rate", 1), rank, "dilation_rate", where),
        "groups": channels,
    }
    weights = {"kernel": depthwise.reshape(*kernel_size, 1, channels * multiplier)}
    activation = activation_name(config.get("activation"), major=spec.major, where=where)
    if not separable:
        if use_bias:
            weights["bias"] = refs[1].read((channels * multiplier,), f"{where} bias")
        options["activation"] = activation
        record = LayerRecord(layer.name, "conv", layer.class_name, layer.inputs, options, weights)
        return [record]
    name = f"{layer.name}_depthwise"
    options["activation"] = "linear"
    first = LayerRecord(name, "conv", layer.class_name, layer.inputs, options, weights)
    filters = int(config["filters"])
    pointwise = {
        "kernel": refs[1].read((1,) * rank + (channels * multiplier, filters), f"{where} kernel")
    }
    if use_bias:
        pointwise["bias"] = refs[2].read((filters,), f"{where} bias")
    ones = (1,) * rank
    after = {
        **common,
        "filters": filters,
        "kernel_size": ones,
        "strides": ones,
        "padding": "valid",
        "dilation_rate": ones,
        "groups": 1,
        "activation": activation,
    }
    second = LayerRecord(layer.name, "conv", layer.class_name, (name,), after, pointwise)
    return [first, second]


def conv_record(layer: LayerSpec, refs: list[WeightRef], spec: ModelSpec) -> LayerRecord:
    """The ``conv`` record of a ``Conv1D``/``Conv2D`` layer, its weights' shapes checked."""
    where, config = spec.where(layer), layer.config
    rank = CONV_CLASSES[layer.class_name]
    padding = str(config.get("padding", "valid")).lower()
    if padding not in PADDINGS or (padding == "causal" and rank != 1):
        allowed = PADDINGS if rank == 1 else PADDINGS[:2]
        raise UnsupportedFeatureError(
            f"{where}: padding={config.get('padding')!r}; expected one of {list(allowed)}"
        )
    filters, groups = int(config["filters"]), int(config.get("groups", 1) or 1)
    kernel_size = sizes(config["kernel_size"], rank, "kernel_size", where)
    use_bias = bool(config.get("use_bias", True))
    expect_count(refs, 2 if use_bias else 1, where)
    declared = refs[0].shape
    if len(declared) != rank + 2 or tuple(declared[:rank]) != kernel_size:
        raise WeightShapeError(
            f"{where}: kernel has shape {declared}; expected ({', '.join(map(str, kernel_size))}"
            f", input channels / groups, {filters})"
        )
    weights = {"kernel": refs[0].read((*kernel_size, declared[rank], filters), f"{where} kernel")}
    if use_bias:
        weights["bias"] = refs[1].read((filters,), f"{where} bias")
    if filters % groups:
        raise UnsupportedFeatureError(f"{where}: filters={filters} not divisible by {groups=}")
    options = {
        "rank": rank,
        "filters": filters,
        "kernel_size": kernel_size,
        "strides": sizes(config.get("strides", 1), rank, "strides", where),
        "padding": padding,
        "dilation_rate": sizes(config.get("dilation_rate", 1), rank, "dilation_rate", where),
        "groups": groups,
        "data_format": data_format(config, where),
        "activation": activation_name(config.get("activation"), major=spec.major, where=where),
    }
    return LayerRecord(layer.name, "conv", layer.class_name, layer.inputs, options, weights)


def conv_transpose_record(layer: LayerSpec, refs: list[WeightRef], spec: ModelSpec) -> LayerRecord:
    """The ``conv_transpose`` record of a ``Conv1DTranspose``/``Conv2DTranspose`` layer: the
    steps TensorFlow keeps of its full output as ``crops`` (:func:`transpose_crops`), with
    this package's ``cropping`` on top."""
    where, config = spec.where(layer), layer.config
    rank = TRANSPOSE_CLASSES[layer.class_name]
    padding = str(config.get("padding", "valid")).lower()
    if padding not in PADDINGS[:2]:
        raise UnsupportedFeatureError(
            f"{where}: padding={config.get('padding')!r}; expected one of {list(PADDINGS[:2])}"
        )
    filters = int(config["filters"])
    kernel_size = sizes(config["kernel_size"], rank, "kernel_size", where)
    strides = sizes(config.get("strides", 1), rank, "strides", where)
    dilation = sizes(config.get("dilation_rate", 1), rank, "dilation_rate", where)
    given = config.get("output_padding")
    added: tuple[int | None, ...] = (None,) * rank
    if given is not None:  # Keras asks for the steps these many past the full output
        added = sizes(given, rank, "output_padding", where, least=0)
    cropping = pairs(config.get("cropping") or 0, rank, "cropping", where)
    crops = []
    for k, s, d, extra, (cut_before, cut_after) in zip(
        kernel_size, strides, dilation, added, cropping
    ):
        before, after = transpose_crops(padding, extra, k, s, d)
        crops.append((before + cut_before, after + cut_after))
    use_bias = bool(config.get("use_bias", True))
    expect_count(refs, 2 if use_bias else 1, where)
    declared = refs[0].shape
    if len(declared) != rank + 2 or tuple(declared[: rank + 1]) != (*kernel_size, filters):
        raise WeightShapeError(
            f"{where}: kernel has shape {declared}; expected ({', '.join(map(str, kernel_size))}"
            f", {filters}, input channels)"
        )
    weights = {"kernel": refs[0].read((*kernel_size, filters, declared[-1]), f"{where} kernel")}
    if use_bias:
        weights["bias"] = refs[1].read((filters,), f"{where} bias")
    options = {
        "rank": rank,
        "filters": filters,
        "kernel_size": kernel_size,
        "strides": strides,
        "dilation_rate": dilation,
        "crops": tuple(crops),
        "data_format": data_format(config, where),
        "activation": activation_name(config.get("activation"), major=spec.major, where=where),
    }
    return LayerRecord(
        layer.name, "conv_transpose", layer.class_name, layer.inputs, options, weights
    )


def padding_record(layer: LayerSpec, spec: ModelSpec) -> LayerRecord:
    """The ``zero_padding`` or ``cropping`` record of a ``ZeroPadding1D/2D`` or
    ``Cropping1D/2D``: one (before, after) pair per spatial axis."""
    where, config = spec.where(layer), layer.config
    key = "padding" if layer.kind == "zero_padding" else "cropping"
    rank = 2 if layer.class_name.endswith("2D") else 1
    options: dict[str, Any] = {
        key: pairs(config.get(key, 1), rank, key, where),
        "data_format": data_format(config, where),
    }
    return LayerRecord(layer.name, layer.kind, layer.class_name, layer.inputs, options)


__all__ = [
    "CONV_CLASSES",
    "DEPTHWISE_CLASSES",
    "TRANSPOSE_CLASSES",
    "conv_record",
    "conv_transpose_record",
    "data_format",
    "depthwise_records",
    "padding_record",
    "pairs",
    "sizes",
]
