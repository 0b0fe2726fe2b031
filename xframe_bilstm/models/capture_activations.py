"""Activations of a captured ``forward`` (``torch.relu``, ``F.gelu``, ``F.softplus``,
``F.leaky_relu``, ``F.elu``, softmax over an axis), as records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..graph import LayerRecord
from .capture_tensors import Tensors, Unsupported, axis_of, op_name

_ACTIVATIONS = {
    "aten.relu": "relu",
    "aten.tanh": "tanh",
    "aten.sigmoid": "sigmoid",
    "aten.silu": "silu",
    "aten.selu": "selu",
    "aten.softsign": "softsign",
    "aten.hardsigmoid": "hard_sigmoid_keras3",
    "aten.exp": "exponential",
    "aten.mish": "mish",
}


def _record(name: str, kind: str, cls: str, x: str, **options: Any) -> LayerRecord:
    return LayerRecord(name, kind, cls, (x,), options)


def _activation(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    activation = _ACTIVATIONS[op_name(node)]
    return [_record(name, "activation", activation, tensors.name(args[0]), activation=activation)]


def _gelu(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    approximate = kwargs.get("approximate", args[1] if len(args) > 1 else "none")
    activation = "gelu" if approximate == "none" else "gelu_tanh"
    return [_record(name, "activation", "gelu", tensors.name(args[0]), activation=activation)]


def _softplus(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    beta = args[1] if len(args) > 1 else kwargs.get("beta", 1)
    threshold = args[2] if len(args) > 2 else kwargs.get("threshold", 20)
    if beta != 1 or threshold != 20:  # as nn.Softplus children are read
        raise Unsupported("applies aten.softplus with beta or threshold changed")
    return [_record(name, "activation", "softplus", tensors.name(args[0]), activation="softplus")]


def _leaky_relu(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    slope = float(args[1]) if len(args) > 1 else float(kwargs.get("negative_slope", 0.01))
    options = {"max_value": None, "negative_slope": slope, "threshold": 0.0}
    return [LayerRecord(name, "relu", "leaky_relu", (tensors.name(args[0]),), options)]


def _elu(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    alpha, scale, input_scale = [*args[1:], 1.0, 1.0, 1.0][:3]
    if scale != 1 or input_scale != 1:
        raise Unsupported("applies aten.elu with scale or input_scale other than 1")
    return [_record(name, "elu", "elu", tensors.name(args[0]), alpha=float(alpha))]


def _softmax(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    log = "log" in op_name(node)
    axis = axis_of(tensors, args[0], int(args[1]), op_name(node))
    x = tensors.name(args[0])
    if axis == tensors.rank(args[0]) - 1:  # the last axis: Keras's softmax activation
        activation = "log_softmax" if log else "softmax"
        return [_record(name, "activation", activation, x, activation=activation)]
    if log:
        raise Unsupported(f"applies log_softmax over dim={args[1]}, not the last axis")
    return [_record(name, "softmax", "softmax", x, axis=axis, log=False)]


Handler = Callable[[Any, str, Tensors, list, dict], list]
HANDLERS: dict[str, Handler] = {
    **dict.fromkeys(_ACTIVATIONS, _activation),
    "aten.gelu": _gelu,
    "aten.softplus": _softplus,
    "aten.leaky_relu": _leaky_relu,
    "aten.elu": _elu,
    **dict.fromkeys(["aten.softmax", "aten._softmax", "aten.log_softmax"], _softmax),
    "aten._log_softmax": _softmax,
}

__all__ = ["HANDLERS"]
