"""The standard ONNX operators real exports put around recurrent nodes, run with torch ops.

:data:`STANDARD_OPS` maps an operator name to a function that runs one node of it on torch
tensors, following the ONNX operator definition of every opset version the exporters emit
(``torch.onnx.export``, its dynamo exporter, tf2onnx): inputs that older opsets took as
attributes (``Clip``'s bounds, ``Reduce*``'s axes, ``Pad``'s pads) are read from either
place, and each attribute's default is the specification's. This module holds the
elementwise operators, activations, ``Softmax``/``LogSoftmax``, ``MatMul``/``Gemm``/
``Einsum``, reductions and ``Dropout``; :mod:`.layer_ops` the convolution, padding, pooling
and normalization operators. The interpreter (:mod:`.interpreter`) dispatches on the table.

torch is reached through :attr:`.op_call.OpCall.torch`, so importing this module imports no
framework.
"""

from __future__ import annotations

import math
from functools import reduce
from typing import Any

from .index_ops import INDEX_OPS
from .layer_ops import LAYER_OPS
from .op_call import Op, OpCall


def _unary(name: str) -> Op:
    return lambda call: (getattr(call.torch, name)(call.args[0]),)


def _variadic(name: str) -> Op:
    """Max/Min/Sum: the inputs combined pairwise, with broadcasting."""
    return lambda call: (reduce(getattr(call.torch, name), call.args),)


def _mean(call: OpCall) -> tuple[Any, ...]:
    return (reduce(call.torch.add, call.args) / len(call.args),)


def _pow(call: OpCall) -> tuple[Any, ...]:
    base, exponent = call.args
    return (call.torch.pow(base, exponent).to(base.dtype),)  # the result has the base's type


def _clip(call: OpCall) -> tuple[Any, ...]:
    x = call.args[0]
    if call.opset < 11:  # bounds as attributes, the float range by default
        low, high = call.attributes.get("min"), call.attributes.get("max")
    else:  # a bound the graph holds is a number here (:mod:`.static_values`)
        low, high = (_number(call, call.arg(index)) for index in (1, 2))
    if low is None and high is None:
        return (x,)
    return (call.torch.clamp(x, min=low, max=high),)


def _number(call: OpCall, value: Any) -> Any:
    """A static value as a Python number; a tensor (or None) as it is."""
    return value if value is None or call.torch.is_tensor(value) else value.reshape(-1)[0].item()


def _alpha(call: OpCall, default: float) -> float:
    return float(call.attributes.get("alpha", default))


def _leaky_relu(call: OpCall) -> tuple[Any, ...]:
    x = call.args[0]
    return (call.torch.where(x >= 0, x, x * _alpha(call, 0.01)),)


def _elu(call: OpCall) -> tuple[Any, ...]:
    return (call.torch.nn.functional.elu(call.args[0], _alpha(call, 1.0)),)


def _selu(call: OpCall) -> tuple[Any, ...]:
    x = call.args[0]
    alpha = _alpha(call, 1.67326319217681884765625)
    gamma = float(call.attributes.get("gamma", 1.05070102214813232421875))
    return (gamma * call.torch.where(x > 0, x, alpha * call.torch.expm1(x)),)


def _hard_sigmoid(call: OpCall) -> tuple[Any, ...]:
    beta = float(call.attributes.get("beta", 0.5))
    return (call.torch.clamp(_alpha(call, 0.2) * call.args[0] + beta, 0.0, 1.0),)


def _hard_swish(call: OpCall) -> tuple[Any, ...]:
    x = call.args[0]
    return (x * call.torch.clamp(x / 6.0 + 0.5, 0.0, 1.0),)


def _softplus(call: OpCall) -> tuple[Any, ...]:
    # log(1 + exp(x)) without torch's cut-over to x above 20, which ONNX does not have.
    x, torch = call.args[0], call.torch
    return (torch.clamp(x, min=0) + torch.log1p(torch.exp(-torch.abs(x))),)


def _softsign(call: OpCall) -> tuple[Any, ...]:
    x = call.args[0]
    return (x / (1 + call.torch.abs(x)),)


def _prelu(call: OpCall) -> tuple[Any, ...]:
    x, slope = call.args
    return (call.torch.where(x >= 0, x, x * slope),)


def _gelu(call: OpCall) -> tuple[Any, ...]:
    approximate = call.attributes.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise call.refuse(f"approximate={approximate!r} (ONNX defines 'none' and 'tanh')")
    return (call.torch.nn.functional.gelu(call.args[0], approximate=approximate),)


def _softmax_family(name: str) -> Op:
    """Softmax, LogSoftmax: over ``axis`` (default -1) from opset 13; before, over the input
    flattened to 2-D at ``axis`` (default 1), every axis from it on at once."""

    def run(call: OpCall) -> tuple[Any, ...]:
        x, function = call.args[0], getattr(call.torch, name)
        if call.opset >= 13:
            return (function(x, dim=int(call.attributes.get("axis", -1))),)
        axis = int(call.attributes.get("axis", 1)) % max(x.dim(), 1)
        flat = x.reshape(math.prod(x.shape[:axis]), -1)
        return (function(flat, dim=1).reshape(x.shape),)

    return run


def _matmul(call: OpCall) -> tuple[Any, ...]:
    return (call.torch.matmul(call.args[0], call.args[1]),)


def _gemm(call: OpCall) -> tuple[Any, ...]:
    a, b, c = call.args[0], call.args[1], call.arg(2)
    if call.attributes.get("transA", 0):
        a = a.transpose(0, 1)
    if call.attributes.get("transB", 0):
        b = b.transpose(0, 1)
    y = float(call.attributes.get("alpha", 1.0)) * (a @ b)
    if c is not None:
        y = y + float(call.attributes.get("beta", 1.0)) * c
    return (y,)


def _einsum(call: OpCall) -> tuple[Any, ...]:
    return (call.torch.einsum(call.attributes["equation"], *call.args),)


def _dropout(call: OpCall) -> tuple[Any, ...]:
    """Inference: the input as it is, and an all-true mask."""
    training = call.arg(2)
    if call.attributes.get("is_test", 1) == 0 or (training is not None and bool(training)):
        raise call.refuse(
            "runs in training mode (random); export the model in inference mode "
            "(model.eval() before torch.onnx.export, training=False in Keras)"
        )
    x = call.args[0]
    return x, call.torch.ones_like(x, dtype=call.torch.bool)


# Reductions: axes an input from this opset on (an attribute before).
_AXES_INPUT_FROM = {"ReduceSum": 13}


def _reduction(name: str) -> Op:
    def run(call: OpCall) -> tuple[Any, ...]:
        x, torch = call.args[0], call.torch
        if call.opset >= _AXES_INPUT_FROM.get(name, 18):
            axes = call.ints("", 1)
        else:
            axes = [int(a) for a in call.attributes.get("axes", [])]
        keep = bool(call.attributes.get("keepdims", 1))
        if not axes:
            if call.attributes.get("noop_with_empty_axes", 0):
                return (x,)
            axes = list(range(x.dim()))
        dims = tuple(sorted(a % x.dim() for a in axes))
        if name in ("ReduceMax", "ReduceMin"):
            function = torch.amax if name == "ReduceMax" else torch.amin
            return (function(x, dim=dims, keepdim=keep),)
        if name == "ReduceProd":
            for dim in reversed(dims):
                x = torch.prod(x, dim=dim, keepdim=keep)
            return (x,)
        function = {"ReduceSum": torch.sum, "ReduceMean": torch.mean}[name]
        return (function(x, dim=dims, keepdim=keep),)

    return run


def _arg_extreme(name: str) -> Op:
    def run(call: OpCall) -> tuple[Any, ...]:
        x, torch = call.args[0], call.torch
        axis = int(call.attributes.get("axis", 0)) % x.dim()
        keep = bool(call.attributes.get("keepdims", 1))
        if call.attributes.get("select_last_index", 0):
            flipped = getattr(torch, name)(x.flip(axis), dim=axis, keepdim=keep)
            return (x.shape[axis] - 1 - flipped,)
        return (getattr(torch, name)(x, dim=axis, keepdim=keep),)

    return run


def _standard_ops() -> dict[str, Op]:
    ops: dict[str, Op] = {
        name: _unary(function)
        for name, function in {
            "Abs": "abs", "Ceil": "ceil", "Erf": "erf", "Exp": "exp", "Floor": "floor",
            "Log": "log", "Reciprocal": "reciprocal", "Relu": "relu", "Sigmoid": "sigmoid",
            "Sign": "sign", "Sqrt": "sqrt", "Tanh": "tanh",
        }.items()
    }  # fmt: skip
    ops.update(
        {
            "ArgMax": _arg_extreme("argmax"),
            "ArgMin": _arg_extreme("argmin"),
            "Clip": _clip,
            "Dropout": _dropout,
            "Einsum": _einsum,
            "Elu": _elu,
            "Gelu": _gelu,
            "Gemm": _gemm,
            "HardSigmoid": _hard_sigmoid,
            "HardSwish": _hard_swish,
            "LeakyRelu": _leaky_relu,
            "LogSoftmax": _softmax_family("log_softmax"),
            "MatMul": _matmul,
            "Max": _variadic("maximum"),
            "Mean": _mean,
            "Min": _variadic("minimum"),
            "Pow": _pow,
            "PRelu": _prelu,
            "Selu": _selu,
            "Softmax": _softmax_family("softmax"),
            "Softplus": _softplus,
            "Softsign": _softsign,
            "Sum": _variadic("add"),
        }
    )
    for name in ("ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum"):
        ops[name] = _reduction(name)
    ops.update(LAYER_OPS)
    ops.update(INDEX_OPS)
    return ops


# Operator name -> the function that runs one node of it.
STANDARD_OPS: dict[str, Op] = _standard_ops()
