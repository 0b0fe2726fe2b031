"""Convolution, padding, pooling and normalization operators, run with torch ops.

:data:`LAYER_OPS` is the part of :data:`~.standard_ops.STANDARD_OPS` that front ends of
recurrent models (a CRNN's convolutions, a voice-activity model's padded 1-D convolutions)
export to. Padding follows ONNX exactly: explicit ``pads`` may differ at the two ends of an
axis and ``auto_pad`` puts an odd padding's extra element at the end (``SAME_UPPER``) or
the start (``SAME_LOWER``), so the input is padded first and the kernel then runs unpadded.
Pooling cuts the padded input into windows (``Tensor.unfold``), which gives ``ceil_mode``,
dilations and ``count_include_pad`` their ONNX meaning on every axis. A transposed
convolution runs unpadded (its full output), then ``pads`` cut that output's ends and
``output_padding`` adds steps back at the end, before the bias.

torch is reached through :attr:`.op_call.OpCall.torch`, so importing this module imports no
framework.
"""

from __future__ import annotations

from typing import Any

from .op_call import Op, OpCall
from .resize_op import resize


def _per_axis(call: OpCall, name: str, count: int, default: int) -> list[int]:
    return [int(v) for v in call.attributes.get(name, [default] * count)]


def _explicit_pads(
    call: OpCall, sizes: list[int], kernel: list[int], strides: list[int], dilations: list[int]
) -> list[tuple[int, int]]:
    """The (begin, end) padding of each spatial axis, from ``pads`` or ``auto_pad``."""
    count = len(sizes)
    auto_pad = call.attributes.get("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", ""):
        pads = _per_axis(call, "pads", 2 * count, 0)
        return list(zip(pads[:count], pads[count:]))
    if auto_pad == "VALID":
        return [(0, 0)] * count
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise call.refuse(f"auto_pad={auto_pad!r} (ONNX defines NOTSET, SAME_UPPER, "
                          "SAME_LOWER and VALID)")  # fmt: skip
    result = []
    for size, k, stride, dilation in zip(sizes, kernel, strides, dilations):
        out = -(-size // stride)  # SAME: as many outputs as ceil(size / stride)
        total = max(0, (out - 1) * stride + (k - 1) * dilation + 1 - size)
        small = total // 2
        result.append(
            (small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small)
        )
    return result


def _pad_axis(torch: Any, x: Any, dim: int, begin: int, end: int, value: float) -> Any:
    """``x`` padded with ``value`` on axis ``dim`` (a negative amount crops)."""
    widths = [0, 0] * (x.dim() - 1 - dim) + [begin, end]
    return torch.nn.functional.pad(x, widths, mode="constant", value=value)


def _conv(call: OpCall) -> tuple[Any, ...]:
    torch = call.torch
    x, weight, bias = call.args[0], call.args[1], call.arg(2)
    count = x.dim() - 2
    if count not in (1, 2, 3):
        raise call.refuse(f"a {x.dim()}-D input; Conv runs on 1-D, 2-D and 3-D data")
    kernel = [int(k) for k in call.attributes.get("kernel_shape", weight.shape[2:])]
    strides = _per_axis(call, "strides", count, 1)
    dilations = _per_axis(call, "dilations", count, 1)
    pads = _explicit_pads(call, list(x.shape[2:]), kernel, strides, dilations)
    for axis, (begin, end) in enumerate(pads):
        x = _pad_axis(torch, x, axis + 2, begin, end, 0.0)
    function = getattr(torch.nn.functional, f"conv{count}d")
    group = int(call.attributes.get("group", 1))
    return (function(x, weight, bias, stride=strides, dilation=dilations, groups=group),)


def _conv_transpose(call: OpCall) -> tuple[Any, ...]:
    torch = call.torch
    x, weight, bias = call.args[0], call.args[1], call.arg(2)
    count = x.dim() - 2
    auto_pad = call.attributes.get("auto_pad", "NOTSET")
    if count not in (1, 2, 3) or auto_pad not in ("NOTSET", "", "VALID"):
        raise call.refuse(
            f"a {x.dim()}-D input with auto_pad={auto_pad!r}; ConvTranspose runs on 1-D to "
            "3-D data with explicit pads"
        )
    if "output_shape" in call.attributes:
        raise call.refuse("output_shape (the pads it implies); give pads and output_padding")
    strides = _per_axis(call, "strides", count, 1)
    dilations = _per_axis(call, "dilations", count, 1)
    pads = [0] * (2 * count) if auto_pad == "VALID" else _per_axis(call, "pads", 2 * count, 0)
    added = _per_axis(call, "output_padding", count, 0)
    function = getattr(torch.nn.functional, f"conv_transpose{count}d")
    group = int(call.attributes.get("group", 1))
    y = function(x, weight, None, stride=strides, dilation=dilations, groups=group)
    for axis in range(count):
        y = _pad_axis(torch, y, axis + 2, -pads[axis], added[axis] - pads[count + axis], 0.0)
    return (y if bias is None else y + bias.reshape(-1, *[1] * count),)


def _pad(call: OpCall) -> tuple[Any, ...]:
    """Pad: ``pads`` ([begin of each axis, end of each axis]), ``mode`` constant, reflect,
    edge or wrap; pads, value and axes are inputs from opset 11 (axes from 18)."""
    torch, x = call.torch, call.args[0]
    mode = call.attributes.get("mode", "constant")
    if call.opset < 11:
        pads = [int(v) for v in call.attributes.get("pads", call.attributes.get("paddings", []))]
        value, axes = float(call.attributes.get("value", 0.0)), None
    else:
        pads = call.ints("", 1) or []
        given = call.arg(2)
        empty = given is None or given.reshape(-1).shape[0] == 0
        value = 0.0 if empty else float(given.reshape(-1)[0])
        axes = call.ints("", 3)
    axes = [a % x.dim() for a in (axes if axes is not None else range(x.dim()))]
    if len(pads) != 2 * len(axes):
        raise call.refuse(f"{len(pads)} pads for {len(axes)} axes (2 per axis expected)")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise call.refuse(f"mode={mode!r} (ONNX defines constant, reflect, edge and wrap)")
    for k, axis in enumerate(axes):
        begin, end = pads[k], pads[k + len(axes)]
        if mode == "constant":
            x = _pad_axis(torch, x, axis, begin, end, value)
        elif begin or end:
            index = [_source(mode, i, x.shape[axis]) for i in range(-begin, x.shape[axis] + end)]
            x = x.index_select(axis, torch.tensor(index, dtype=torch.long, device=x.device))
    return (x,)


def _source(mode: str, i: int, size: int) -> int:
    """Which element of an axis of ``size`` the padded position ``i`` repeats."""
    if mode == "edge":
        return min(max(i, 0), size - 1)
    if mode == "wrap" or size == 1:
        return i % size
    period = 2 * (size - 1)  # reflect: mirrored about the first and last elements
    j = i % period
    return j if j < size else period - j


def _pool(kind: str) -> Op:
    """MaxPool and AveragePool: each output the max or mean of one window of the padded
    input. With ``ceil_mode`` a last window may run past the padding (those positions never
    count), but none starts in the end padding."""

    def run(call: OpCall) -> tuple[Any, ...]:
        torch, x = call.torch, call.args[0]
        if kind == "max" and len(call.node.output) > 1 and call.node.output[1]:
            raise call.refuse("its Indices output is not supported; export without indices")
        count = x.dim() - 2
        kernel = _per_axis(call, "kernel_shape", count, 1)
        strides = _per_axis(call, "strides", count, 1)
        dilations = _per_axis(call, "dilations", count, 1)
        ceil = bool(call.attributes.get("ceil_mode", 0))
        pads = _explicit_pads(call, list(x.shape[2:]), kernel, strides, dilations)
        if not ceil and not any(b or e for b, e in pads) and count in (1, 2):
            # torch's own pooling computes these windows (a capture reads it as pooling)
            if kind == "max":
                pool = getattr(torch.nn.functional, f"max_pool{count}d")
                return (pool(x, kernel, strides, dilation=dilations),)
            if all(d == 1 for d in dilations):
                return (getattr(torch.nn.functional, f"avg_pool{count}d")(x, kernel, strides),)
        include = bool(call.attributes.get("count_include_pad", 0))
        counts = torch.ones((), dtype=x.dtype, device=x.device)
        fill = float("-inf") if kind == "max" else 0.0
        for axis, (k, stride, dilation, (begin, end)) in enumerate(
            zip(kernel, strides, dilations, pads)
        ):
            dim, size, extent = axis + 2, x.shape[axis + 2], (k - 1) * dilation + 1
            span = size + begin + end - extent
            out = (-(-span // stride) if ceil else span // stride) + 1
            if ceil and (out - 1) * stride >= size + begin:
                out -= 1  # a window that would start in the end padding
            after = (out - 1) * stride + extent - size - begin  # past the input's end
            x = _pad_axis(torch, x, dim, begin, after, fill)
            x = x.unfold(dim, extent, stride)[..., ::dilation]
            # What each window divides by along this axis (the counts of the axes multiply).
            weight = 1.0 if include else 0.0
            tail = max(0, min(end, after))
            marks = [weight] * begin + [1.0] * size + [weight] * tail + [0.0] * (after - tail)
            mark = torch.tensor(marks[: begin + size + after], dtype=x.dtype, device=x.device)
            per_axis = mark.unfold(0, extent, stride)[:, ::dilation].sum(dim=1)
            counts = counts * per_axis.reshape([-1 if j == axis else 1 for j in range(count)])
        window = tuple(range(-count, 0))
        if kind == "max":
            return (torch.amax(x, dim=window),)
        return (x.sum(dim=window) / counts,)

    return run


def _global_pool(kind: str) -> Op:
    def run(call: OpCall) -> tuple[Any, ...]:
        x, torch = call.args[0], call.torch
        dims = tuple(range(2, x.dim()))
        function = torch.amax if kind == "max" else torch.mean
        return (function(x, dim=dims, keepdim=True),)

    return run


def _channel(tensor: Any, rank: int) -> Any:
    """A per-channel (C,) tensor shaped to broadcast over (N, C, ...)."""
    return tensor.reshape(1, -1, *([1] * (rank - 2)))


def _batch_normalization(call: OpCall) -> tuple[Any, ...]:
    """Inference: the running mean and variance the node holds, per channel (axis 1)."""
    if call.attributes.get("training_mode", 0):
        raise call.refuse("training_mode=1 (batch statistics); export in inference mode")
    if call.opset < 9 and call.attributes.get("spatial", 1) == 0:
        raise call.refuse("spatial=0 (per-activation statistics) is not supported")
    x, scale, bias, mean, variance = call.args[:5]
    epsilon = float(call.attributes.get("epsilon", 1e-5))
    function = call.torch.nn.functional.batch_norm
    return (function(x, mean, variance, scale, bias, training=False, eps=epsilon),)


def _instance_normalization(call: OpCall) -> tuple[Any, ...]:
    x, scale, bias = call.args
    epsilon = float(call.attributes.get("epsilon", 1e-5))
    return (call.torch.nn.functional.instance_norm(x, weight=scale, bias=bias, eps=epsilon),)


def _layer_normalization(call: OpCall) -> tuple[Any, ...]:
    """Over the axes from ``axis`` (default -1) on; outputs Y, Mean and InvStdDev."""
    x, scale, bias = call.args[0], call.args[1], call.arg(2)
    axis = int(call.attributes.get("axis", -1)) % x.dim()
    dims = tuple(range(axis, x.dim()))
    epsilon = float(call.attributes.get("epsilon", 1e-5))
    mean = x.mean(dim=dims, keepdim=True)
    centered = x - mean
    inverse = 1.0 / call.torch.sqrt((centered * centered).mean(dim=dims, keepdim=True) + epsilon)
    y = centered * inverse * scale
    return (y if bias is None else y + bias), mean, inverse


# Operator name -> the function that runs one node of it.
LAYER_OPS: dict[str, Op] = {
    "AveragePool": _pool("average"),
    "BatchNormalization": _batch_normalization,
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "GlobalAveragePool": _global_pool("average"),
    "GlobalMaxPool": _global_pool("max"),
    "InstanceNormalization": _instance_normalization,
    "LayerNormalization": _layer_normalization,
    "MaxPool": _pool("max"),
    "Pad": _pad,
    "Resize": resize,
    "Upsample": resize,
}
