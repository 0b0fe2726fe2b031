"""The tensor operations of a captured ``forward`` (``reduce``, ``slice``, ``scalar_op``,
``weight_op``, ``elementwise``, ``matmul``) as torch modules, computing what
:mod:`xframe_bilstm.reference.tensor_ops` computes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import UnsupportedFeatureError
from ..graph import LayerRecord
from ..reference.tensor_ops import expanded_shape, scalar_op, slice_index

_NORM_ORDERS = {"l1_norm": 1, "l2_norm": 2}


class Reduce(nn.Module):
    """The sum, mean, maximum, minimum, vector norm, variance or standard deviation over
    ``axes`` (counted with the batch axis)."""

    def __init__(self, op: str, axes: tuple[int, ...], keepdims: bool, correction: int = 0) -> None:
        super().__init__()
        self.op, self.axes, self.keepdims = op, tuple(axes), keepdims
        self.correction = correction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op in ("var", "std"):
            spread = torch.var if self.op == "var" else torch.std
            return spread(x, dim=self.axes, correction=self.correction, keepdim=self.keepdims)
        if self.op == "logsumexp":
            return torch.logsumexp(x, dim=self.axes, keepdim=self.keepdims)
        if self.op == "sum":
            return torch.sum(x, dim=self.axes, keepdim=self.keepdims)
        if self.op == "mean":
            return torch.mean(x, dim=self.axes, keepdim=self.keepdims)
        if self.op == "max":
            return torch.amax(x, dim=self.axes, keepdim=self.keepdims)
        if self.op in _NORM_ORDERS:
            order = _NORM_ORDERS[self.op]
            return torch.linalg.vector_norm(x, order, dim=self.axes, keepdim=self.keepdims)
        return torch.amin(x, dim=self.axes, keepdim=self.keepdims)

    def extra_repr(self) -> str:
        return f"op={self.op!r}, axes={self.axes}, keepdims={self.keepdims}"


class Slice(nn.Module):
    """``x[..., start:stop:step, ...]`` on one axis, or one position of it (``x[:, -1]``)."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__()
        self.options = options
        self.index = slice_index(options)
        self.reverses = int(options["step"]) < 0  # torch slices forwards only: flip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reverses:
            return torch.flip(x, [int(self.options["axis"])])
        return x[self.index]

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.options.items())


class ScalarOp(nn.Module):
    """``x op constant``, or ``constant op x`` where ``reverse``."""

    def __init__(self, op: str, constant: float, reverse: bool) -> None:
        super().__init__()
        self.op, self.constant, self.reverse = op, constant, reverse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extremes = (torch.clamp_min, torch.clamp_max)
        return scalar_op(self.op, x, self.constant, self.reverse, extremes)

    def extra_repr(self) -> str:
        return f"op={self.op!r}, constant={self.constant}, reverse={self.reverse}"


class WeightOp(nn.Module):
    """``x op value`` (or ``value op x``) with a tensor of its own, broadcast from the right."""

    def __init__(self, op: str, value: torch.Tensor, reverse: bool) -> None:
        super().__init__()
        self.op, self.reverse = op, reverse
        self.value = nn.Parameter(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return scalar_op(self.op, x, self.value, self.reverse)

    def extra_repr(self) -> str:
        return f"op={self.op!r}, value={tuple(self.value.shape)}, reverse={self.reverse}"


class Elementwise(nn.Module):
    """One function (``abs``, ``log``...) on every element."""

    def __init__(self, function: str) -> None:
        super().__init__()
        self.function = function
        self.apply_to = getattr(torch, function)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_to(x)

    def extra_repr(self) -> str:
        return f"function={self.function!r}"


class MatMul(nn.Module):
    """``a @ b`` over the last two axes, each first transposed where said; no mask after."""

    def __init__(self, transpose_a: bool, transpose_b: bool) -> None:
        super().__init__()
        self.transpose_a, self.transpose_b = transpose_a, transpose_b

    def forward(
        self, a: torch.Tensor, b: torch.Tensor, masks: Sequence[torch.Tensor | None] = ()
    ) -> torch.Tensor:
        a = a.transpose(-1, -2) if self.transpose_a else a
        b = b.transpose(-1, -2) if self.transpose_b else b
        return torch.matmul(a, b)

    def combine_masks(
        self, tensors: list[torch.Tensor], masks: list[torch.Tensor | None]
    ) -> torch.Tensor | None:
        return None

    def extra_repr(self) -> str:
        return f"transpose_a={self.transpose_a}, transpose_b={self.transpose_b}"


class Repeat(nn.Module):
    """Each position on ``axis`` repeated ``repeats`` times in a row."""

    def __init__(self, axis: int, repeats: int) -> None:
        super().__init__()
        self.axis, self.repeats = axis, repeats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(self.repeats, dim=self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, repeats={self.repeats}"


class Expand(nn.Module):
    """Its first input broadcast to ``sizes`` (None: its second input's size there), as
    :func:`~xframe_bilstm.reference.tensor_ops.expanded_shape` reads them."""

    def __init__(self, sizes: tuple[int | None, ...]) -> None:
        super().__init__()
        self.sizes = sizes

    def forward(self, *tensors: torch.Tensor, masks: object = None) -> torch.Tensor:
        x, like_shape = tensors[0], tensors[1].shape if len(tensors) > 1 else ()
        return x.expand(*expanded_shape(self.sizes, x.shape, like_shape))

    def combine_masks(self, tensors: list[torch.Tensor], masks: list[torch.Tensor | None]) -> None:
        return None

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}"


class Gather(nn.Module):
    """Its first input at the positions its second gives on ``axis`` (``torch.gather``),
    the positions cast to integers."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: torch.Tensor, index: torch.Tensor, masks: object = None) -> torch.Tensor:
        return torch.gather(x, self.axis, index.long())

    def combine_masks(self, tensors: list[torch.Tensor], masks: list[torch.Tensor | None]) -> None:
        return None

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class SliceTo(nn.Module):
    """Its first input's first positions on ``axis``, as many as its second has there."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: torch.Tensor, like: torch.Tensor, masks: object = None) -> torch.Tensor:
        return x.narrow(self.axis, 0, like.shape[self.axis])

    def combine_masks(self, tensors: list[torch.Tensor], masks: list[torch.Tensor | None]) -> None:
        return None

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


def tensor_op_module(record: LayerRecord) -> nn.Module:
    """The module of a ``reduce``, ``slice``, ``scalar_op`` or ``matmul`` record.

    Example:
        >>> record = LayerRecord("last", "slice", "select", ("x",),
        ...     {"axis": 1, "start": -1, "stop": None, "step": 1, "keep_axis": False})
        >>> tensor_op_module(record)(torch.arange(6.0).reshape(1, 3, 2)).tolist()
        [[4.0, 5.0]]
    """
    options = record.options
    if record.kind == "reduce":
        axes = tuple(int(axis) for axis in options["axes"])
        correction = int(options.get("correction", 0))
        return Reduce(str(options["op"]), axes, bool(options["keepdims"]), correction)
    if record.kind == "slice":
        return Slice(dict(options))
    if record.kind == "repeat":
        return Repeat(int(options["axis"]), int(options["repeats"]))
    if record.kind == "expand":
        return Expand(tuple(None if s is None else int(s) for s in options["sizes"]))
    if record.kind == "gather":
        return Gather(int(options["axis"]))
    if record.kind == "slice_to":
        return SliceTo(int(options["axis"]))
    if record.kind == "scalar_op":
        op, constant = str(options["op"]), float(options["constant"])
        return ScalarOp(op, constant, bool(options["reverse"]))
    if record.kind == "elementwise":
        return Elementwise(str(options["function"]))
    if record.kind == "weight_op":
        value = torch.tensor(record.weights["value"])
        return WeightOp(str(options["op"]), value, bool(options["reverse"]))
    if record.kind == "matmul":
        return MatMul(bool(options["transpose_a"]), bool(options["transpose_b"]))
    raise UnsupportedFeatureError(f"layer {record.name!r}: no torch module for {record.kind!r}")


__all__ = [
    "Elementwise",
    "Expand",
    "Gather",
    "MatMul",
    "Reduce",
    "Repeat",
    "ScalarOp",
    "Slice",
    "WeightOp",
    "tensor_op_module",
]
