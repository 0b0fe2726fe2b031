"""The quantization operators of int8 graphs, run in torch exactly as onnxruntime's CPU kernels.

:data:`QUANTIZED_OPS` maps an operator (``domain.op`` outside the default domain) to a
function that runs one node of it on torch tensors, in the integer arithmetic the kernels
use, so that a module of an int8 graph computes what onnxruntime computes on it:

- ``QuantizeLinear`` / ``DequantizeLinear``: ``saturate(round(x / scale) + zero_point)`` and
  ``(q - zero_point) * scale``, per tensor or per ``axis``; rounding is half to even.
- ``DynamicQuantizeLinear``: the scale and zero point of each call's own input, its range
  widened to include 0 (``scale = (max(0, max x) - min(0, min x)) / 255``,
  ``zero_point = saturate(round(-min / scale))``), to uint8.
- ``MatMulInteger``: ``(a - a_zero_point) @ (b - b_zero_point)`` accumulated in int32.
- ``com.microsoft.DynamicQuantizeMatMul``: ``a`` quantized per call as above (the whole
  tensor, one scale), the int32 product scaled by ``a_scale * b_scale`` (per column where
  ``b_scale`` is), plus the bias.
- ``com.microsoft.DynamicQuantizeLSTM``: :func:`~.quantized_lstm.quantized_lstm`.

torch is reached through :attr:`.op_call.OpCall.torch`, so importing this module imports no
framework.
"""

from __future__ import annotations

from typing import Any

from .op_call import Op, OpCall
from .quantized_lstm import dynamic_quantize, integer_matmul, quantized_lstm

_UINT8 = (0, 255)
_INT8 = (-128, 127)


def _limits(torch: Any, dtype: Any) -> tuple[int, int]:
    return _UINT8 if dtype == torch.uint8 else _INT8


def _along(value: Any, axis: int, rank: int) -> Any:
    """A per-axis scale or zero point shaped to broadcast along ``axis`` of a rank-``rank``
    tensor; a scalar stays a scalar."""
    if value.dim() == 0 or value.numel() == 1:
        return value.reshape(())
    shape = [1] * rank
    shape[axis % rank] = value.numel()
    return value.reshape(shape)


def _dequantize_linear(call: OpCall) -> tuple[Any, ...]:
    torch = call.torch
    q, scale = call.args[0], call.args[1]
    zero = call.arg(2)
    axis = int(call.attributes.get("axis", 1))
    if call.attributes.get("block_size", 0):
        raise call.refuse("blocked quantization (block_size) is not supported")
    scale = _along(scale.to(torch.float32), axis, q.dim())
    shifted = q.to(torch.int32)
    if zero is not None:
        shifted = shifted - _along(zero.to(torch.int32), axis, q.dim())
    return ((shifted.to(torch.float32) * scale).to(call.dtype),)


def _quantize_linear(call: OpCall) -> tuple[Any, ...]:
    torch = call.torch
    x, scale = call.args[0].to(torch.float32), call.args[1].to(torch.float32)
    zero = call.arg(2)
    axis = int(call.attributes.get("axis", 1))
    if call.attributes.get("block_size", 0):
        raise call.refuse("blocked quantization (block_size) is not supported")
    target = torch.uint8 if zero is None else zero.dtype
    if target not in (torch.uint8, torch.int8):
        raise call.refuse(f"quantization to {target} is not supported (int8 and uint8 are)")
    low, high = _limits(torch, target)
    rounded = torch.round(x / _along(scale, axis, x.dim()))  # half to even, as the kernels
    if zero is not None:
        rounded = rounded + _along(zero.to(torch.float32), axis, x.dim())
    return (rounded.clamp(low, high).to(target),)


def _dynamic_quantize_linear(call: OpCall) -> tuple[Any, ...]:
    q, scale, zero = dynamic_quantize(call.torch, call.args[0])
    return (q, scale, zero)


def _matmul_integer(call: OpCall) -> tuple[Any, ...]:
    torch = call.torch
    a, b = call.args[0], call.args[1]
    a_zero, b_zero = call.arg(2), call.arg(3)
    a_shift = a.to(torch.int32)
    if a_zero is not None:
        # A per-row zero point (one per row of a 2-D a) broadcasts down the rows.
        a_zero = a_zero.to(torch.int32)
        a_shift = a_shift - (a_zero.reshape(-1, 1) if a_zero.numel() > 1 else a_zero.reshape(()))
    b_shift = b.to(torch.int32)
    if b_zero is not None:
        b_zero = b_zero.to(torch.int32)
        b_shift = b_shift - (b_zero if b_zero.numel() > 1 else b_zero.reshape(()))
    return (integer_matmul(torch, a_shift, b_shift),)


def _dynamic_quantize_matmul(call: OpCall) -> tuple[Any, ...]:
    torch = call.torch
    a, b, b_scale = call.args[0].to(torch.float32), call.args[1], call.args[2]
    b_zero, bias = call.arg(3), call.arg(4)
    q, a_scale, a_zero = dynamic_quantize(torch, a)
    shifted_b = b.to(torch.int32)
    if b_zero is not None:
        shifted_b = shifted_b - b_zero.to(torch.int32).reshape(-1)
    product = integer_matmul(torch, q.to(torch.int32) - a_zero.to(torch.int32), shifted_b)
    result = product.to(torch.float32) * (a_scale * b_scale.to(torch.float32).reshape(-1))
    if bias is not None:
        result = result + bias.to(torch.float32)
    return (result.to(call.dtype),)


QUANTIZED_OPS: dict[str, Op] = {
    "DequantizeLinear": _dequantize_linear,
    "QuantizeLinear": _quantize_linear,
    "DynamicQuantizeLinear": _dynamic_quantize_linear,
    "MatMulInteger": _matmul_integer,
    "com.microsoft.DynamicQuantizeMatMul": _dynamic_quantize_matmul,
    "com.microsoft.DynamicQuantizeLSTM": quantized_lstm,
}


def op_key(node: Any) -> str:
    """The key of ``node``'s operator in :data:`QUANTIZED_OPS`: ``domain.op`` outside the
    default domain.

    Example:
        >>> import onnx
        >>> op_key(onnx.helper.make_node("DynamicQuantizeLSTM", [], [], domain="com.microsoft"))
        'com.microsoft.DynamicQuantizeLSTM'
    """
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
