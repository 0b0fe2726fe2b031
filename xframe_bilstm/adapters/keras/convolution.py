"""Convolution, zero padding and cropping records rebuilt as Keras 3 layers.

A record keeps Keras's meaning, so each option goes back under its own name; what Keras's
layers cannot express (a torch-born convolution with strides and dilation both above 1)
is refused by name.
"""

from __future__ import annotations

from typing import Any

from ...graph import LayerRecord
from .activations import keras_activation

KINDS = ("conv", "zero_padding", "cropping")


def conv_refusal(record: LayerRecord) -> str | None:
    """Why Keras 3 cannot rebuild this record, or None when it can.

    Example:
        >>> record = LayerRecord("c", "conv", "Conv1d", ("x",), {"strides": (2,),
        ...                      "dilation_rate": (2,)})
        >>> print(conv_refusal(record))
        layer 'c' (Conv1d): stride (2,) with dilation (2,); Keras's convolutions refuse \
strides above 1 together with dilation_rate above 1
    """
    where = f"layer {record.name!r} ({record.class_name})"
    if record.kind == "cropping" and record.options["data_format"] != "channels_last":
        return f"{where}: Keras's Cropping1D crops channels-last sequences only"
    if record.kind != "conv":
        return None
    strides, dilation = record.options["strides"], record.options["dilation_rate"]
    if max(strides) > 1 and max(dilation) > 1:
        return (
            f"{where}: stride {tuple(strides)} with "
            f"dilation {tuple(dilation)}; Keras's convolutions refuse strides above 1 "
            "together with dilation_rate above 1"
        )
    return None


def conv_layer(record: LayerRecord, keras: Any, dtype: str) -> Any:
    """The Keras layer of a ``conv``, ``zero_padding`` or ``cropping`` record, not built."""
    layers, options, name = keras.layers, record.options, record.name
    if record.kind == "zero_padding":  # 2-D: before a torch Conv2d's explicit padding
        pairs = tuple(tuple(pair) for pair in options["padding"])
        pad = layers.ZeroPadding1D if len(pairs) == 1 else layers.ZeroPadding2D
        return pad(
            pairs[0] if len(pairs) == 1 else pairs,
            data_format=options["data_format"],
            dtype=dtype,
            name=name,
        )
    if record.kind == "cropping":
        (pair,) = options["cropping"]
        return layers.Cropping1D(tuple(pair), dtype=dtype, name=name)
    activation = str(options["activation"])
    conv = layers.Conv1D if int(options["rank"]) == 1 else layers.Conv2D
    return conv(
        int(options["filters"]),
        tuple(options["kernel_size"]),
        strides=tuple(options["strides"]),
        padding=str(options["padding"]),
        data_format=str(options["data_format"]),
        dilation_rate=tuple(options["dilation_rate"]),
        groups=int(options["groups"]),
        activation="softmax" if activation == "softmax" else keras_activation(activation),
        use_bias="bias" in record.weights,
        kernel_initializer="zeros",  # the weights are set right after building
        dtype=dtype,
        name=name,
    )


def set_conv_weights(record: LayerRecord, layer: Any) -> None:
    """Give a built convolution the record's kernel and bias (Keras's own layout)."""
    if record.kind == "conv":
        layer.set_weights([record.weights[k] for k in ("kernel", "bias") if k in record.weights])


__all__ = ["KINDS", "conv_layer", "conv_refusal", "set_conv_weights"]
