"""Convolution, zero padding and cropping records rebuilt as Keras 3 layers.

A record keeps Keras's meaning, so each option goes back under its own name; what Keras's
layers cannot express (a torch-born convolution with strides and dilation both above 1)
is refused by name.

A channels-first convolution with a bias is Keras's ``Conv1D``/``Conv2D`` with one change,
registered as ``xframe_bilstm>ChannelsFirstConv1D``/``2D``: it adds the bias as
``bias + outputs``. Keras 3's TensorFlow ``add`` reads a second operand shaped like a bias,
(1, C, 1), as one over the last axis whenever that axis also has C positions, so Keras's
own layer adds the bias along the time axis when the steps equal the filters.

A transposed convolution is ``xframe_bilstm>Conv1DTranspose``/``2DTranspose``: Keras's
layer run ``"valid"`` with its ``output_padding`` (the steps added at the end), then
``cropping`` (steps cut from each end, as torch's ``padding`` cuts them), its bias added
as above.
"""

from __future__ import annotations

import functools
from typing import Any

from ..._imports import require
from ...graph import LayerRecord
from .activations import keras_activation

KINDS = ("conv", "conv_transpose", "zero_padding", "cropping")


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
    one_axis = len(record.options.get("cropping", ())) == 1
    if record.kind == "cropping" and one_axis and record.options["data_format"] != "channels_last":
        return f"{where}: Keras's Cropping1D crops channels-last sequences only"
    if record.kind not in ("conv", "conv_transpose"):
        return None
    strides, dilation = record.options["strides"], record.options["dilation_rate"]
    if max(strides) > 1 and max(dilation) > 1:
        return (
            f"{where}: stride {tuple(strides)} with "
            f"dilation {tuple(dilation)}; Keras's convolutions refuse strides above 1 "
            "together with dilation_rate above 1"
        )
    added = [-after for _, after in record.options.get("crops", ())]
    if any(steps >= stride for steps, stride in zip(added, strides)):
        return (
            f"{where}: {max(added)} steps added at the end (output_padding) with stride "
            f"{tuple(strides)}; Keras adds fewer steps than the stride only"
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
        pairs = tuple(tuple(pair) for pair in options["cropping"])
        if len(pairs) == 1:
            return layers.Cropping1D(pairs[0], dtype=dtype, name=name)
        data_format = str(options["data_format"])
        return layers.Cropping2D(pairs, data_format=data_format, dtype=dtype, name=name)
    activation = str(options["activation"])
    rank = int(options["rank"])
    if record.kind == "conv_transpose":
        crops = [tuple(pair) for pair in options["crops"]]
        return transposed_classes()[rank](
            int(options["filters"]),
            tuple(options["kernel_size"]),
            strides=tuple(options["strides"]),
            output_padding=tuple(max(-after, 0) for _, after in crops),
            cropping=tuple((before, max(after, 0)) for before, after in crops),
            data_format=str(options["data_format"]),
            dilation_rate=tuple(options["dilation_rate"]),
            activation="softmax" if activation == "softmax" else keras_activation(activation),
            use_bias="bias" in record.weights,
            kernel_initializer="zeros",
            dtype=dtype,
            name=name,
        )
    conv = layers.Conv1D if rank == 1 else layers.Conv2D
    causal = options["padding"] == "causal"  # padded by Keras's own call
    if options["data_format"] == "channels_first" and "bias" in record.weights and not causal:
        conv = channels_first_classes()[rank]
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


@functools.cache
def channels_first_classes() -> dict[int, Any]:
    """The channels-first convolutions by rank, defined and registered on first use."""
    keras = require("keras")
    register = keras.saving.register_keras_serializable(package="xframe_bilstm")

    def bias_on_channels(self: Any, inputs: Any) -> Any:
        outputs = self.convolution_op(inputs, self.kernel)
        if self.use_bias:  # bias first: Keras's TensorFlow add would take it as NHWC's
            bias = keras.ops.reshape(self.bias, (1, self.filters) + (1,) * self.rank)
            outputs = keras.ops.add(bias, outputs)
        return outputs if self.activation is None else self.activation(outputs)

    @register
    class ChannelsFirstConv1D(keras.layers.Conv1D):  # type: ignore[name-defined]
        """Keras's ``Conv1D`` (channels first, no causal padding), its bias added on axis 1
        for every length of the steps."""

        call = bias_on_channels

    @register
    class ChannelsFirstConv2D(keras.layers.Conv2D):  # type: ignore[name-defined]
        """Keras's ``Conv2D`` (channels first), its bias added on axis 1 for every size of
        the image."""

        call = bias_on_channels

    return {1: ChannelsFirstConv1D, 2: ChannelsFirstConv2D}


@functools.cache
def transposed_classes() -> dict[int, Any]:
    """The transposed convolutions by rank, defined and registered on first use."""
    keras = require("keras")
    ops = keras.ops
    register = keras.saving.register_keras_serializable(package="xframe_bilstm")

    class Cropped:
        """Keras's transposed convolution run ``"valid"`` (with its ``output_padding``),
        then ``cropping`` per spatial axis, its bias added on the channels."""

        def __init__(self, *args: Any, cropping: Any = None, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "padding": "valid"})
            rank = len(self.kernel_size)  # type: ignore[attr-defined]
            self.cropping = tuple(tuple(pair) for pair in cropping or ((0, 0),) * rank)

        def call(self, inputs: Any) -> Any:
            layer: Any = self
            outputs = ops.conv_transpose(
                inputs,
                layer.kernel,
                strides=list(layer.strides),
                padding="valid",
                output_padding=layer.output_padding,
                dilation_rate=layer.dilation_rate,
                data_format=layer.data_format,
            )
            channels_first = layer.data_format == "channels_first"
            window = [slice(None)] * outputs.ndim
            for axis, (before, after) in enumerate(self.cropping, start=1 + channels_first):
                window[axis] = slice(before, -after if after else None)
            outputs = outputs[tuple(window)]
            if layer.use_bias:  # bias first, on the channels (see the module's notes)
                shape = [1] * outputs.ndim
                shape[1 if channels_first else -1] = layer.filters
                outputs = ops.add(ops.reshape(layer.bias, shape), outputs)
            return outputs if layer.activation is None else layer.activation(outputs)

        def compute_output_shape(self, input_shape: Any) -> Any:
            shape = list(super().compute_output_shape(input_shape))  # type: ignore[misc]
            layer: Any = self
            first = 2 if layer.data_format == "channels_first" else 1
            for axis, (before, after) in enumerate(self.cropping, start=first):
                shape[axis] = None if shape[axis] is None else shape[axis] - before - after
            return tuple(shape)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "cropping": self.cropping}  # type: ignore[misc]

    @register
    class Conv1DTranspose(Cropped, keras.layers.Conv1DTranspose):  # type: ignore[name-defined]
        """Keras's ``Conv1DTranspose``, then ``cropping``."""

    @register
    class Conv2DTranspose(Cropped, keras.layers.Conv2DTranspose):  # type: ignore[name-defined]
        """Keras's ``Conv2DTranspose``, then ``cropping``."""

    return {1: Conv1DTranspose, 2: Conv2DTranspose}


def set_conv_weights(record: LayerRecord, layer: Any) -> None:
    """Give a built convolution the record's kernel and bias (Keras's own layout)."""
    if record.kind in ("conv", "conv_transpose"):
        layer.set_weights([record.weights[k] for k in ("kernel", "bias") if k in record.weights])


__all__ = [
    "KINDS",
    "channels_first_classes",
    "conv_layer",
    "conv_refusal",
    "set_conv_weights",
    "transposed_classes",
]
