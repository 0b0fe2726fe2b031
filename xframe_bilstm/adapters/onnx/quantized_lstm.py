"""``com.microsoft.DynamicQuantizeLSTM`` in torch, computed as onnxruntime's CPU kernel does.

The kernel (onnxruntime ``contrib_ops/cpu/quantization/dynamic_quantize_lstm.cc`` on
``core/providers/cpu/rnn/uni_directional_lstm.cc`` and ``rnn_helpers.cc``) runs each
direction as the float LSTM does, except that both matrix products quantize their float
operand on every call:

1. The input product ``X·Wᵀ`` is one call for the whole sequence: the first ``max(lengths)``
   steps of all rows (in processing order, reversed within each row's length for the reverse
   direction) are quantized together to uint8 with one dynamic scale and zero point
   (:func:`dynamic_quantize`: the range widened to include 0, ``scale = range / 255``), then
   multiplied by the int8 (or uint8) weights less their zero point, accumulated in int32
   and scaled by ``x_scale * W_scale`` (per column where ``W_scale`` is per column).
2. The recurrent product ``h_{t-1}·Rᵀ`` is one call per step: the previous state
   (``initial_h`` at the first step, then the step's output, zero for rows past their
   length) is quantized with its own dynamic scale, multiplied and scaled the same way and
   added to the input product. The kernel splits the batch between its threads when
   ``B > 4`` or ``2 <= B`` and ``H <= 256``: each group of ``ceil(B / threads)`` rows
   quantizes its own previous state, so the result depends on the session's intra-op
   thread count. :func:`kernel_threads` sets the count computed (1 by default: the whole
   batch at once, what a session with ``intra_op_num_threads=1`` computes).
3. The bias ``Wb + Rb`` (summed first) is added, and the gates run in float as the float
   LSTM's: ``i, o, f`` sigmoid, ``c`` tanh, ``c_t = c_{t-1}·f + i·g``, ``h_t = o·tanh(c_t)``.

Only the first zero point of a direction's weights is used (the kernel reads one), and only
the default activations, without ``clip``, ``input_forget`` or peepholes, are computed; other
nodes are refused naming what they set.

torch is reached through the caller's :class:`~.op_call.OpCall`, so importing this module
imports no framework.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from .op_call import OpCall

_THREADS: ContextVar[int] = ContextVar("kernel_threads", default=1)

_DEFAULT_ACTIVATIONS = ("Sigmoid", "Tanh", "Tanh")


@contextmanager
def kernel_threads(threads: int) -> Iterator[None]:
    """Compute ``DynamicQuantizeLSTM`` as an onnxruntime session with ``threads`` intra-op
    threads does (the batch groups whose states are quantized together), inside the block.

    Example:
        >>> with kernel_threads(4):
        ...     recurrent_groups(batch=8, hidden=16)
        [(0, 2), (2, 4), (4, 6), (6, 8)]
        >>> recurrent_groups(batch=8, hidden=16)
        [(0, 8)]
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    token = _THREADS.set(threads)
    try:
        yield
    finally:
        _THREADS.reset(token)


def recurrent_groups(batch: int, hidden: int) -> list[tuple[int, int]]:
    """The row ranges whose previous states the kernel quantizes together, at the thread
    count of :func:`kernel_threads` (onnxruntime's ``UniDirectionalLstm::SetNumThreads``)."""
    threads = _THREADS.get()
    size = batch
    if batch > 4 or (batch >= 2 and hidden <= 256):
        size = -(-batch // threads)
    size = max(size, 1)
    return [(start, min(start + size, batch)) for start in range(0, batch, size)]


def dynamic_quantize(torch: Any, x: Any) -> tuple[Any, Any, Any]:
    """``x`` quantized to uint8 with the scale and zero point of its own range, as ONNX's
    ``DynamicQuantizeLinear`` and onnxruntime's dynamic kernels compute them in float32.

    Returns:
        The uint8 tensor, the float32 scale and the uint8 zero point (0-d tensors).

    Example:
        >>> import torch
        >>> q, scale, zero = dynamic_quantize(torch, torch.tensor([-1.0, 0.0, 2.0]))
        >>> q.tolist(), round(float(scale), 6), int(zero)
        ([0, 85, 255], 0.011765, 85)
    """
    x = x.to(torch.float32)
    zero32 = torch.zeros((), dtype=torch.float32)
    low = torch.minimum(x.min(), zero32) if x.numel() else zero32
    high = torch.maximum(x.max(), zero32) if x.numel() else zero32
    if bool(high == low):
        scale = torch.ones((), dtype=torch.float32)
    else:
        scale = (high - low) / torch.tensor(255.0, dtype=torch.float32)
    zero = torch.round((zero32 - low / scale).clamp(0.0, 255.0))  # half to even
    q = (torch.round(x / scale) + zero).clamp(0.0, 255.0)
    return q.to(torch.uint8), scale, zero.to(torch.uint8)


def integer_matmul(torch: Any, a: Any, b: Any) -> Any:
    """The int32 product of two integer tensors, exact (through float64, which holds every
    sum of int8 x uint8 products below 2**53)."""
    return torch.matmul(a.to(torch.float64), b.to(torch.float64)).round().to(torch.int32)


def _quantized_product(torch: Any, x: Any, weight: Any, zero: int, scale: Any) -> Any:
    """``x @ weight`` as the kernel computes it: ``x`` (rows, K) quantized as a whole,
    ``weight`` (K, N) integers less ``zero``, the int32 result scaled by
    ``x_scale * scale`` in float32."""
    q, x_scale, x_zero = dynamic_quantize(torch, x)
    product = integer_matmul(torch, q.to(torch.int32) - x_zero.to(torch.int32), weight - zero)
    return product.to(torch.float32) * (x_scale * scale)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _refuse_options(call: OpCall) -> None:
    attributes = call.attributes
    activations = [_text(a) for a in attributes.get("activations", [])]
    for k in range(0, len(activations), 3):
        if tuple(activations[k : k + 3]) != _DEFAULT_ACTIVATIONS:
            raise call.refuse(
                f"activations {activations} are not computed for DynamicQuantizeLSTM "
                "(Sigmoid, Tanh, Tanh are)"
            )
    if attributes.get("clip") is not None:
        raise call.refuse(f"clip={attributes['clip']} is not computed for DynamicQuantizeLSTM")
    if attributes.get("input_forget", 0):
        raise call.refuse("input_forget=1 is not computed for DynamicQuantizeLSTM")
    if call.arg(7) is not None:
        raise call.refuse("peepholes P are not computed for DynamicQuantizeLSTM")


def _reverse_within(x: Any, lengths: list[int]) -> Any:
    """(T, B, ...) with each row's first ``lengths[b]`` steps reversed, the rest kept."""
    out = x.clone()
    for b, length in enumerate(lengths):
        if length > 0:
            out[:length, b] = x[:length, b].flip(0)
    return out


def _direction_weights(call: OpCall, d: int) -> tuple[Any, Any, int, Any, Any, int]:
    """Direction ``d``'s integer W (D, 4H) and R (H, 4H), their zero points and scales."""
    torch = call.torch
    w, r = call.args[1][d].to(torch.int32), call.args[2][d].to(torch.int32)
    scales = []
    for scale_slot, zero_slot in ((8, 9), (10, 11)):
        scale = call.args[scale_slot].to(torch.float32)
        scale = scale[d] if scale.dim() > 0 and scale.shape[0] > 1 else scale.reshape(-1)[0:1]
        zero = call.arg(zero_slot)
        zero_value = 0
        if zero is not None:
            zero_value = int(zero[d].reshape(-1)[0] if zero.dim() > 0 else zero)
        scales.append((scale.reshape(-1) if scale.numel() > 1 else scale.reshape(()), zero_value))
    (w_scale, w_zero), (r_scale, r_zero) = scales
    return w, w_scale, w_zero, r, r_scale, r_zero


def quantized_lstm(call: OpCall) -> tuple[Any, ...]:
    """One ``DynamicQuantizeLSTM`` node, as onnxruntime's CPU kernel computes it.

    Returns ``Y`` (T, directions, B, H), ``Y_h`` and ``Y_c`` (directions, B, H), float32.
    """
    torch = call.torch
    _refuse_options(call)
    x = call.args[0].to(torch.float32)
    steps, batch = x.shape[0], x.shape[1]
    hidden = int(call.attributes["hidden_size"])
    direction = _text(call.attributes.get("direction", "forward"))
    directions = 2 if direction == "bidirectional" else 1
    reverse = direction == "reverse"
    lengths_arg = call.arg(4)
    lengths = [steps] * batch if lengths_arg is None else [int(v) for v in lengths_arg.tolist()]
    bias = call.arg(3)
    keeps_sequence = bool(call.node.output and call.node.output[0])
    ys, hs, cs = [], [], []
    for d in range(directions):
        backward = reverse or d == 1
        w, w_scale, w_zero, r, r_scale, r_zero = _direction_weights(call, d)
        h0, c0 = call.arg(5), call.arg(6)
        h = torch.zeros(batch, hidden) if h0 is None else h0[d].to(torch.float32)
        c = torch.zeros(batch, hidden) if c0 is None else c0[d].to(torch.float32)
        fused = torch.zeros(4 * hidden)
        if bias is not None:
            fused = bias[d, : 4 * hidden].to(torch.float32) + bias[d, 4 * hidden :].to(
                torch.float32
            )
        y, h_final, c_final = _run_direction(
            torch, x, lengths, backward, keeps_sequence, (w, w_scale, w_zero),
            (r, r_scale, r_zero), fused, h, c,
        )  # fmt: skip
        ys.append(y)
        hs.append(h_final)
        cs.append(c_final)
    dtype = call.dtype
    return (
        torch.stack(ys, 1).to(dtype),
        torch.stack(hs, 0).to(dtype),
        torch.stack(cs, 0).to(dtype),
    )


def _run_direction(
    torch: Any,
    x: Any,
    lengths: list[int],
    backward: bool,
    keeps_sequence: bool,
    input_weights: tuple[Any, Any, int],
    recurrent_weights: tuple[Any, Any, int],
    bias: Any,
    h: Any,
    c: Any,
) -> tuple[Any, Any, Any]:
    steps, batch = x.shape[0], x.shape[1]
    hidden = h.shape[1]
    longest = max(lengths) if lengths else 0
    sequence = _reverse_within(x, lengths) if backward else x
    y = torch.zeros(steps, batch, hidden)
    h_final = torch.zeros(batch, hidden)
    c_final = torch.zeros(batch, hidden)
    if longest == 0:
        return y, h_final, c_final
    w, w_scale, w_zero = input_weights
    r, r_scale, r_zero = recurrent_weights
    rows = sequence[:longest].reshape(longest * batch, -1)
    projected = _quantized_product(torch, rows, w, w_zero, w_scale).reshape(longest, batch, -1)
    previous = h
    groups = recurrent_groups(batch, hidden)
    for t in range(longest):
        recurrent = torch.cat(
            [_quantized_product(torch, previous[a:b], r, r_zero, r_scale) for a, b in groups]
        )
        gates = projected[t] + recurrent
        gates = gates + bias
        i, o, f, g = gates.split(hidden, dim=1)
        c_new = c * torch.sigmoid(f) + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        active = torch.tensor([t < length for length in lengths]).reshape(-1, 1)
        c = torch.where(active, c_new, c)
        h_step = torch.where(active, h_new, torch.zeros_like(h_new))
        y[t] = h_step
        last = torch.tensor([t + 1 == length for length in lengths]).reshape(-1, 1)
        h_final = torch.where(last, h_new, h_final)
        c_final = torch.where(last, c_new, c_final)
        # The next product quantizes the step's output (zero past a row's length); without
        # a Y output the kernel keeps the last state of finished rows there instead.
        previous = h_step if keeps_sequence else torch.where(active, h_new, previous)
    if backward:
        y = _reverse_within(y, lengths)
    return y, h_final, c_final
