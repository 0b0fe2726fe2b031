"""Convolutions, zero padding and cropping as standard ONNX operators.

A convolution is one ``Conv`` node (torch's kernel layout) on channels-first data, with a
``Transpose`` on each side for a channels-last layer. Its zeros are explicit: ``pads`` for
``"valid"``, ``"causal"`` and stride-1 ``"same"`` (amounts that do not depend on the size),
and for a strided ``"same"`` a ``Pad`` whose amounts are computed from the input's shape
as TensorFlow computes them (the odd zero at the end), so sizes stay dynamic. ONNX's
``auto_pad`` is not used: runtimes differ on it with dilations. A transposed convolution
is one ``ConvTranspose``: its ``crops`` are ``pads`` (the steps cut at each end), the steps
added at the end ``output_padding``. ``ZeroPadding1D`` is a ``Pad``, ``Cropping1D`` a
``Slice``.
"""

from __future__ import annotations

import numpy as np

from ...convolution import same_padding, torch_kernel
from ...graph import LayerRecord
from .builder import GraphBuilder

_END = np.iinfo(np.int64).max  # Slice to the end of an axis


def _spatial_axes(record: LayerRecord, rank: int) -> list[int]:
    """The spatial axes of the record's (Keras-layout) tensors, batch axis counted."""
    first = 1 if record.options["data_format"] == "channels_last" else 2
    return list(range(first, first + rank))


def _weights(builder: GraphBuilder, record: LayerRecord, x: str) -> list[str]:
    """``x`` (Keras layout) moved to channels first, the kernel in torch's layout, the bias."""
    rank, prefix = int(record.options["rank"]), record.name
    if record.options["data_format"] == "channels_last":
        perm = [0, rank + 1, *range(1, rank + 1)]
        x = builder.one("Transpose", [x], f"{prefix}/channels_first", perm=perm)
    kernel = torch_kernel(np.asarray(record.weights["kernel"])).astype(builder.float_dtype)
    inputs = [x, builder.constant(f"{prefix}/kernel", kernel)]
    if "bias" in record.weights:
        bias = np.asarray(record.weights["bias"]).astype(builder.float_dtype)
        inputs.append(builder.constant(f"{prefix}/bias", bias))
    return inputs


def _in_keras_layout(builder: GraphBuilder, record: LayerRecord, y: str) -> str:
    rank = int(record.options["rank"])
    if record.options["data_format"] != "channels_last":
        return y
    perm = [0, *range(2, rank + 2), 1]
    return builder.one("Transpose", [y], f"{record.name}/channels_last", perm=perm)


def conv_transpose_node(builder: GraphBuilder, record: LayerRecord, x: str) -> str:
    """The output of a ``conv_transpose`` record on ``x`` (Keras layout), before its
    activation."""
    options = record.options
    crops = [tuple(pair) for pair in options["crops"]]
    y = builder.one(
        "ConvTranspose",
        _weights(builder, record, x),
        f"{record.name}/conv",
        kernel_shape=list(options["kernel_size"]),
        strides=list(options["strides"]),
        dilations=list(options["dilation_rate"]),
        pads=[before for before, _ in crops] + [max(after, 0) for _, after in crops],
        output_padding=[max(-after, 0) for _, after in crops],
    )
    return _in_keras_layout(builder, record, y)


def conv_node(builder: GraphBuilder, record: LayerRecord, x: str) -> str:
    """The output of a ``conv`` record on ``x`` (Keras layout), before its activation."""
    options, prefix = record.options, record.name
    rank = int(options["rank"])
    inputs = _weights(builder, record, x)
    x = inputs[0]
    strides, dilations = list(options["strides"]), list(options["dilation_rate"])
    kernel_shape = list(options["kernel_size"])
    padding = str(options["padding"])
    if padding == "same" and max(strides) > 1:
        inputs[0] = _same_pad(builder, record, x)
        pairs = [(0, 0)] * rank
    elif padding == "same":
        pairs = [same_padding(1, k, 1, d) for k, d in zip(kernel_shape, dilations)]
    elif padding == "causal":
        pairs = [(d * (k - 1), 0) for k, d in zip(kernel_shape, dilations)]
    else:
        pairs = [(0, 0)] * rank
    y = builder.one(
        "Conv",
        inputs,
        f"{prefix}/conv",
        kernel_shape=kernel_shape,
        strides=strides,
        dilations=dilations,
        group=int(options["groups"]),
        pads=[before for before, _ in pairs] + [after for _, after in pairs],
    )
    return _in_keras_layout(builder, record, y)


def _same_pad(builder: GraphBuilder, record: LayerRecord, x: str) -> str:
    """``x`` (channels first) padded as TensorFlow's strided ``"same"`` pads it."""
    options, prefix = record.options, record.name
    rank = int(options["rank"])
    strides = np.asarray(options["strides"], np.int64)
    span = np.asarray(
        [d * (k - 1) + 1 for k, d in zip(options["kernel_size"], options["dilation_rate"])],
        np.int64,
    )
    shape = builder.one("Shape", [x], f"{prefix}/shape")
    start, end = builder.ints("start2", [2]), builder.ints(f"end{rank + 2}", [rank + 2])
    sizes = builder.one("Slice", [shape, start, end], f"{prefix}/sizes")
    stride = builder.ints(f"{prefix}/strides", strides.tolist())
    # ceil(size / stride) outputs need (outputs - 1) * stride + span inputs.
    minus_one = builder.ints(f"{prefix}/strides_1", (strides - 1).tolist())
    rounded = builder.one("Add", [sizes, minus_one], f"{prefix}/rounded")
    outputs = builder.one("Div", [rounded, stride], f"{prefix}/outputs")
    last = builder.one("Sub", [outputs, builder.ints("one", [1])], f"{prefix}/last")
    needed = builder.one("Mul", [last, stride], f"{prefix}/last_start")
    span_name = builder.ints(f"{prefix}/span", span.tolist())
    needed = builder.one("Add", [needed, span_name], f"{prefix}/needed")
    total = builder.one("Sub", [needed, sizes], f"{prefix}/total")
    total = builder.one("Max", [total, builder.ints("zeros", [0] * rank)], f"{prefix}/total0")
    before = builder.one("Div", [total, builder.ints("two", [2])], f"{prefix}/before")
    after = builder.one("Sub", [total, before], f"{prefix}/after")
    none = builder.ints("zeros2", [0, 0])  # batch and channels
    pads = builder.one("Concat", [none, before, none, after], f"{prefix}/pads", axis=0)
    return builder.one("Pad", [x, pads], f"{prefix}/padded")


def pad_or_crop_node(builder: GraphBuilder, record: LayerRecord, x: str) -> str:
    """The output of a ``zero_padding`` (``Pad``) or ``cropping`` (``Slice``) record."""
    key = "padding" if record.kind == "zero_padding" else "cropping"
    pairs = list(record.options[key])
    axes = _spatial_axes(record, len(pairs))
    if record.kind == "zero_padding":
        rank = 2 + len(pairs)
        before, after = [0] * rank, [0] * rank
        for axis, (start, end) in zip(axes, pairs):
            before[axis], after[axis] = start, end
        pads = builder.ints(f"{record.name}/pads", before + after)
        return builder.one("Pad", [x, pads], record.name)
    starts = builder.ints(f"{record.name}/starts", [start for start, _ in pairs])
    ends = builder.ints(f"{record.name}/ends", [-end if end else _END for _, end in pairs])
    return builder.one(
        "Slice",
        [x, starts, ends, builder.ints(f"axes{''.join(map(str, axes))}", axes)],
        record.name,
    )


__all__ = ["conv_node", "conv_transpose_node", "pad_or_crop_node"]
