"""Keras activations that no single standard ONNX operator computes at every opset,
written as small subgraphs of standard operators (opset 13 on, as whole models export).

Each function computes the Keras definition (:mod:`xframe_bilstm.activations`), not a
near one: GELU exact goes through ``Erf``, ``leaky_relu`` takes Keras's slope 0.2.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .builder import GraphBuilder

Emit = Callable[[GraphBuilder, str, str], str]  # (builder, x, prefix) -> output


def scalar(builder: GraphBuilder, value: float) -> str:
    """A float constant of the graph's dtype, named after its value (added once)."""
    return builder.constant(f"c{value:g}", np.asarray(value, builder.float_dtype))


def _mul(builder: GraphBuilder, a: str, b: str, hint: str) -> str:
    return builder.one("Mul", [a, b], hint)


def _gelu(builder: GraphBuilder, x: str, prefix: str) -> str:
    scaled = _mul(builder, x, scalar(builder, 1.0 / math.sqrt(2.0)), f"{prefix}/scaled")
    erf = builder.one("Erf", [scaled], f"{prefix}/erf")
    one_plus = builder.one("Add", [erf, scalar(builder, 1.0)], f"{prefix}/one_plus")
    half_x = _mul(builder, x, scalar(builder, 0.5), f"{prefix}/half_x")
    return _mul(builder, half_x, one_plus, prefix)


def _gelu_tanh(builder: GraphBuilder, x: str, prefix: str) -> str:
    cube = _mul(builder, _mul(builder, x, x, f"{prefix}/square"), x, f"{prefix}/cube")
    inner = builder.one(
        "Add", [x, _mul(builder, cube, scalar(builder, 0.044715), f"{prefix}/c3")], prefix
    )
    inner = _mul(builder, inner, scalar(builder, math.sqrt(2.0 / math.pi)), f"{prefix}/inner")
    one_plus = builder.one(
        "Add", [builder.one("Tanh", [inner], f"{prefix}/tanh"), scalar(builder, 1.0)], prefix
    )
    return _mul(builder, _mul(builder, x, scalar(builder, 0.5), f"{prefix}/half"), one_plus, prefix)


def _clip(low: float | None, high: float | None) -> Emit:
    def emit(builder: GraphBuilder, x: str, prefix: str) -> str:
        bounds = ["" if low is None else scalar(builder, low)]
        if high is not None:
            bounds.append(scalar(builder, high))
        return builder.one("Clip", [x, *bounds], prefix)

    return emit


def _times(gate: Callable[[GraphBuilder, str, str], str]) -> Emit:
    """``x · gate(x)``."""

    def emit(builder: GraphBuilder, x: str, prefix: str) -> str:
        return _mul(builder, x, gate(builder, x, f"{prefix}/gate"), prefix)

    return emit


def _mish_gate(builder: GraphBuilder, x: str, prefix: str) -> str:
    return builder.one("Tanh", [builder.one("Softplus", [x], f"{prefix}/softplus")], prefix)


def _log_sigmoid(builder: GraphBuilder, x: str, prefix: str) -> str:
    negative = builder.one("Neg", [x], f"{prefix}/neg")
    return builder.one("Neg", [builder.one("Softplus", [negative], f"{prefix}/sp")], prefix)


def _tanh_shrink(builder: GraphBuilder, x: str, prefix: str) -> str:
    return builder.one("Sub", [x, builder.one("Tanh", [x], f"{prefix}/tanh")], prefix)


def _squareplus(builder: GraphBuilder, x: str, prefix: str) -> str:
    square = builder.one("Add", [_mul(builder, x, x, f"{prefix}/sq"), scalar(builder, 4.0)], prefix)
    total = builder.one("Add", [x, builder.one("Sqrt", [square], f"{prefix}/sqrt")], prefix)
    return _mul(builder, total, scalar(builder, 0.5), prefix)


def _one(op: str, **attributes: float | int) -> Emit:
    def emit(builder: GraphBuilder, x: str, prefix: str) -> str:
        return builder.one(op, [x], prefix, **attributes)

    return emit


COMPOSITE_ACTIVATIONS: dict[str, Emit] = {
    "silu": _times(_one("Sigmoid")),
    "relu6": _clip(0.0, 6.0),
    "hard_tanh": _clip(-1.0, 1.0),
    "leaky_relu": _one("LeakyRelu", alpha=0.2),
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "hard_silu": _times(_one("HardSigmoid", alpha=1.0 / 6.0, beta=0.5)),
    "mish": _times(_mish_gate),
    "log_sigmoid": _log_sigmoid,
    "celu": _one("Celu", alpha=1.0),
    "tanh_shrink": _tanh_shrink,
    "soft_shrink": _one("Shrink", lambd=0.5, bias=0.5),
    "hard_shrink": _one("Shrink", lambd=0.5, bias=0.0),
    "squareplus": _squareplus,
    "log_softmax": _one("LogSoftmax", axis=-1),
}


def composite_activation(builder: GraphBuilder, name: str, x: str, prefix: str) -> str | None:
    """The output of activation ``name`` applied to ``x``, or None when it is not here.

    Example:
        >>> import onnx
        >>> builder = GraphBuilder(onnx, 17)
        >>> composite_activation(builder, "relu6", "x", "act"), builder.nodes[0].op_type
        ('act', 'Clip')
    """
    emit = COMPOSITE_ACTIVATIONS.get(name)
    return None if emit is None else emit(builder, x, prefix)


__all__ = ["COMPOSITE_ACTIVATIONS", "composite_activation", "scalar"]
