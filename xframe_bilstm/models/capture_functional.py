"""Functional calls in a captured ``forward`` read as the modules they stand for.

``F.max_pool1d(x, 2)`` computes what ``nn.MaxPool1d(2)(x)`` computes, and
``F.layer_norm(x, (8,), self.w, self.b)`` what an ``nn.LayerNorm`` holding ``self.w`` and
``self.b`` computes. So such a call becomes that module, built from the call's arguments
and the tensors the module holds, and is read by the reader of module calls: one reader
per layer kind, with its checks and refusals, whichever way ``forward`` wrote the layer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .._imports import require
from .capture_tensors import Tensors, Unsupported, op_name


def _ints(value: Any) -> Any:
    """torch's ``[2]`` of a 1-D pooling argument as the module's ``2``; 2-D ones stay."""
    if isinstance(value, (list, tuple)):
        return int(value[0]) if len(value) == 1 else tuple(int(v) for v in value)
    return value


def _arguments(node: Any, names: tuple[str, ...], defaults: dict[str, Any]) -> dict[str, Any]:
    given = dict(zip(names, node.args[1:])) | dict(node.kwargs)
    return {name: given.get(name, defaults.get(name)) for name in names}


def _pool(kind: str, dims: int, nn: Any, node: Any, tensors: Tensors) -> Any:
    # aten's arguments after the input, in order, with their defaults
    names: tuple[str, ...] = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
    defaults: dict[str, Any] = {"padding": 0, "dilation": 1, "ceil_mode": False}
    if kind == "avg":
        names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
        names += ("divisor_override",) if dims == 2 else ()
        defaults = {"padding": 0, "ceil_mode": False, "count_include_pad": True}
    values = _arguments(node, names, defaults)
    values = {name: _ints(value) for name, value in values.items()}
    values["stride"] = values["stride"] or None  # torch's [] is the kernel's size
    module = getattr(nn, f"{'Max' if kind == 'max' else 'Avg'}Pool{dims}d")
    return module(**values)


def _adaptive(kind: str, dims: int, nn: Any, node: Any, tensors: Tensors) -> Any:
    module = getattr(nn, f"Adaptive{'Max' if kind == 'max' else 'Avg'}Pool{dims}d")
    return module(_ints(node.args[1]))


def _layer_norm(nn: Any, node: Any, tensors: Tensors) -> Any:
    names = ("normalized_shape", "weight", "bias", "eps")
    values = _arguments(node, names, {"eps": 1e-5})
    weight, bias = (_held(tensors, values[name], name) for name in ("weight", "bias"))
    module = nn.LayerNorm(
        tuple(values["normalized_shape"]),
        float(values["eps"]),
        elementwise_affine=weight is not None,
        bias=bias is not None,
    )
    _load(module, weight=weight, bias=bias)
    return module


def _group_norm(nn: Any, node: Any, tensors: Tensors) -> Any:
    values = _arguments(node, ("num_groups", "weight", "bias", "eps"), {"eps": 1e-5})
    weight, bias = (_held(tensors, values[name], name) for name in ("weight", "bias"))
    channels = int(node.args[0].meta["val"].shape[1])
    affine = weight is not None or bias is not None  # one alone: the other is ones or zeros
    module = nn.GroupNorm(int(values["num_groups"]), channels, float(values["eps"]), affine)
    _load(module, weight=weight, bias=bias)
    return module


def _batch_norm(nn: Any, node: Any, tensors: Tensors) -> Any:
    names = ("weight", "bias", "running_mean", "running_var", "training", "momentum", "eps")
    values = _arguments(node, names, {"training": False, "momentum": 0.1, "eps": 1e-5})
    if values["training"]:
        raise Unsupported("applies aten.batch_norm with training=True (the batch's statistics)")
    held = {name: _held(tensors, values[name], name) for name in names[:4]}
    if held["running_mean"] is None or held["running_var"] is None:
        raise Unsupported("applies aten.batch_norm without running statistics")
    rank = len(node.args[0].meta["val"].shape)
    if rank not in (2, 3, 4):
        raise Unsupported(
            f"normalizes a tensor of rank {rank}; read on (B, C), (B, C, L), (B, C, H, W)"
        )
    module = getattr(nn, f"BatchNorm{max(rank - 2, 1)}d")(
        int(held["running_mean"].shape[0]),
        float(values["eps"]),
        affine=held["weight"] is not None or held["bias"] is not None,
    )
    _load(module, weight=held["weight"], bias=held["bias"])
    _load(module, running_mean=held["running_mean"], running_var=held["running_var"])
    return module


def _instance_norm(nn: Any, node: Any, tensors: Tensors) -> Any:
    names = ("weight", "bias", "running_mean", "running_var", "use_input_stats", "momentum", "eps")
    values = _arguments(node, names, {"use_input_stats": True, "momentum": 0.1, "eps": 1e-5})
    held = {name: _held(tensors, values[name], name) for name in names[:4]}
    shape = tuple(node.args[0].meta["val"].shape)
    if len(shape) not in (3, 4):
        raise Unsupported(
            f"normalizes a tensor of rank {len(shape)}; read on (B, C, L) or (B, C, H, W)"
        )
    statistics = not values["use_input_stats"]  # the running ones
    module = getattr(nn, f"InstanceNorm{len(shape) - 2}d")(
        int(shape[1]),
        float(values["eps"]),
        affine=held["weight"] is not None or held["bias"] is not None,
        track_running_stats=statistics,
    )
    _load(module, weight=held["weight"], bias=held["bias"])
    if statistics:
        _load(module, running_mean=held["running_mean"], running_var=held["running_var"])
    return module


def _convolution(dims: int, transposed: bool, nn: Any, node: Any, tensors: Tensors) -> Any:
    # aten's arguments after the input, in order (conv_transpose puts dilation last)
    names: tuple[str, ...] = ("weight", "bias", "stride", "padding", "dilation", "groups")
    if transposed:
        names = ("weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")
    defaults = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "output_padding": 0}
    values = _arguments(node, names, defaults)
    if isinstance(values["padding"], str):  # "same"/"valid", as the module takes them
        raise Unsupported(f"applies aten.conv{dims}d with padding={values['padding']!r}")
    weight, bias = (_held(tensors, values[name], name) for name in ("weight", "bias"))
    sizes = {name: _sizes(values[name], dims) for name in names[2:] if name != "groups"}
    groups = int(values["groups"])
    # (out, in / groups, k...) for a convolution, (in, out / groups, k...) transposed
    channels = weight.shape[0] if transposed else weight.shape[1] * groups
    filters = weight.shape[1] * groups if transposed else weight.shape[0]
    kind = f"ConvTranspose{dims}d" if transposed else f"Conv{dims}d"
    kernel = tuple(int(k) for k in weight.shape[2:])
    module = getattr(nn, kind)(
        int(channels), int(filters), kernel, **sizes, groups=groups, bias=bias is not None
    )
    _load(module, weight=weight, bias=bias)
    return module


def _sizes(value: Any, dims: int) -> tuple[int, ...]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return tuple(int(v) for v in (values * dims if len(values) == 1 else values))


def _held(tensors: Tensors, value: Any, what: str) -> Any:
    """The tensor the module holds for an argument (None for none given)."""
    if value is None:
        return None
    held = tensors.value(value)
    if held is None:
        raise Unsupported(f"gives a {what} computed in forward, not one the module holds")
    return held


def _load(module: Any, **arrays: Any) -> None:
    torch = require("torch")
    with torch.no_grad():
        for name, array in arrays.items():
            if array is not None:
                getattr(module, name).copy_(torch.from_numpy(array))


Builder = Callable[[Any, Any, Tensors], Any]
_BUILDERS: dict[str, Builder] = {
    **{
        f"aten.{prefix}{kind}_pool{dims}d": functools.partial(builder, kind, dims)
        for prefix, builder in (("", _pool), ("adaptive_", _adaptive))
        for kind in ("max", "avg")
        for dims in (1, 2)
    },
    **{
        f"aten.conv{'_transpose' if transposed else ''}{dims}d": functools.partial(
            _convolution, dims, transposed
        )
        for dims in (1, 2)
        for transposed in (False, True)
    },
    "aten.layer_norm": _layer_norm,
    "aten.batch_norm": _batch_norm,
    "aten.group_norm": _group_norm,
    "aten.instance_norm": _instance_norm,
}
FUNCTIONAL = frozenset(_BUILDERS)


def functional_module(node: Any, tensors: Tensors) -> tuple[Any, Any]:
    """The module a functional call stands for, in eval mode, and the node it reads.

    Raises:
        Unsupported: an argument the module cannot hold (a weight computed in ``forward``).
    """
    nn = require("torch").nn
    op = op_name(node)
    return _BUILDERS[op](nn, node, tensors).eval(), node.args[0]


__all__ = ["FUNCTIONAL", "functional_module"]
