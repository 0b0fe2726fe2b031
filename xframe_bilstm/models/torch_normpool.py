"""Keras normalization and pooling layers as small torch modules, in Keras's own layout.

The port keeps the original's layout: a channels-last Keras layer takes and returns
channels-last tensors. Pooling follows TensorFlow: ``same`` pads ``total // 2`` before and
the rest after, the maximum never picks the padding and the average divides by the values
a window covers (torch's own ``padding`` pads evenly and counts the padding by default).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..adapters.torch.tensors import owned_tensor


def _parameter(array: np.ndarray | None) -> nn.Parameter | None:
    return None if array is None else nn.Parameter(owned_tensor(array))


def _broadcast(weight: torch.Tensor, ndim: int, axes: tuple[int, ...]) -> torch.Tensor:
    """``weight`` (the sizes of ``axes``) shaped to broadcast against an ``ndim`` tensor."""
    shape = [1] * ndim
    for index, axis in enumerate(axes):
        shape[axis] = weight.shape[index]
    return weight.reshape(shape)


class _Normalization(nn.Module):
    """``(x - mean) / sqrt(variance + epsilon)``, then the optional scale and offset."""

    def __init__(self, weights: dict[str, np.ndarray], epsilon: float) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.weight = _parameter(weights.get("gamma"))
        self.bias = _parameter(weights.get("beta"))

    def normalize(
        self, x: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor, axes: tuple[int, ...]
    ) -> torch.Tensor:
        y = (x - mean) * torch.rsqrt(variance + self.epsilon)
        if self.weight is not None:
            y = y * _broadcast(self.weight, x.dim(), axes)
        if self.bias is not None:
            y = y + _broadcast(self.bias, x.dim(), axes)
        return y


class BatchNorm(_Normalization):
    """Keras ``BatchNormalization`` at inference: the moving statistics, Keras's epsilon.

    ``axis`` counts the batch axis, as in Keras (``-1``: channels last). The state_dict
    reads as torch's (``weight``, ``bias``, ``running_mean``, ``running_var``).
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, weights: dict[str, np.ndarray], *, axis: int, epsilon: float) -> None:
        super().__init__(weights, epsilon)
        self.axis = axis
        self.register_buffer("running_mean", owned_tensor(weights["moving_mean"]))
        self.register_buffer("running_var", owned_tensor(weights["moving_variance"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = (self.axis % x.dim(),)
        mean = _broadcast(self.running_mean.to(x.dtype), x.dim(), axes)
        variance = _broadcast(self.running_var.to(x.dtype), x.dim(), axes)
        return self.normalize(x, mean, variance, axes)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, epsilon={self.epsilon}"


class LayerNorm(_Normalization):
    """Keras ``LayerNormalization`` over ``axis`` (any axes, counted with the batch axis)."""

    def __init__(
        self, weights: dict[str, np.ndarray], *, axis: tuple[int, ...], epsilon: float
    ) -> None:
        super().__init__(weights, epsilon)
        self.axis = tuple(axis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = tuple(sorted({axis % x.dim() for axis in self.axis}))
        variance, mean = torch.var_mean(x, dim=axes, unbiased=False, keepdim=True)
        return self.normalize(x, mean, variance, axes)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, epsilon={self.epsilon}"


class GroupNorm(_Normalization):
    """Keras ``GroupNormalization``: ``groups`` of consecutive channels on ``axis``.

    ``F.group_norm`` on the channels moved to axis 1 (where torch keeps them), so the
    state_dict reads as ``nn.GroupNorm``'s (``weight``, ``bias``).
    """

    def __init__(
        self, weights: dict[str, np.ndarray], *, axis: int, groups: int, epsilon: float
    ) -> None:
        super().__init__(weights, epsilon)
        self.axis, self.groups = axis, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axis = self.axis % x.dim()
        channels_first = x.movedim(axis, 1)
        y = F.group_norm(channels_first, self.groups, self.weight, self.bias, self.epsilon)
        return y.movedim(1, axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, groups={self.groups}, epsilon={self.epsilon}"


class Pool(nn.Module):
    """Keras ``MaxPooling1D/2D`` or ``AveragePooling1D/2D``, TensorFlow's padding."""

    def __init__(
        self,
        op: str,
        pool_size: tuple[int, ...],
        strides: tuple[int, ...],
        padding: str,
        data_format: str,
    ) -> None:
        super().__init__()
        self.op, self.padding, self.data_format = op, padding, data_format
        self.pool_size, self.strides = tuple(pool_size), tuple(strides)

    def _pads(self, sizes: tuple[int, ...]) -> list[int]:
        """``F.pad``'s list (last axis first) of TensorFlow's ``same`` padding."""
        pads: list[int] = []
        for size, window, stride in reversed(list(zip(sizes, self.pool_size, self.strides))):
            # Non-negative floor division only: traced for export, it must not truncate.
            total = max(((size + stride - 1) // stride - 1) * stride + window - size, 0)
            pads += [total // 2, total - total // 2]
        return pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = self.data_format == "channels_last"
        last = x.dim() - 1  # positive axes: torch's ONNX export mistranslates movedim(-1, 1)
        if channels_last:
            x = x.movedim(last, 1)
        rank = len(self.pool_size)
        pads = self._pads(tuple(x.shape[2:])) if self.padding == "same" else [0] * 2 * rank
        if self.op == "max":
            padded = F.pad(x, pads, value=float("-inf"))
            pooling = F.max_pool1d if rank == 1 else F.max_pool2d
            y = pooling(padded, self.pool_size, self.strides)
        else:
            average = F.avg_pool1d if rank == 1 else F.avg_pool2d
            y = average(F.pad(x, pads), self.pool_size, self.strides)
            if any(pads):  # the share of each window that is input, not padding
                covered = F.pad(torch.ones_like(x[:1, :1]), pads)
                y = y / average(covered, self.pool_size, self.strides)
        return y.movedim(1, last) if channels_last else y

    def extra_repr(self) -> str:
        return (
            f"op={self.op!r}, pool_size={self.pool_size}, strides={self.strides}, "
            f"padding={self.padding!r}, data_format={self.data_format!r}"
        )


class GlobalPool(nn.Module):
    """Keras ``GlobalMaxPooling1D/2D``/``GlobalAveragePooling1D/2D``.

    Every axis but batch and channels is pooled. A masked (1-D) average counts the valid
    steps only, as Keras does; the maximum ignores the mask, as Keras 3 does.
    """

    def __init__(self, op: str, keepdims: bool, data_format: str = "channels_last") -> None:
        super().__init__()
        self.op, self.keepdims, self.data_format = op, keepdims, data_format

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        channels_first = self.data_format == "channels_first"
        axes = tuple(range(2, x.dim())) if channels_first else tuple(range(1, x.dim() - 1))
        if self.op == "max":
            return x.amax(dim=axes, keepdim=self.keepdims)
        if mask is None:
            return x.mean(dim=axes, keepdim=self.keepdims)
        valid = mask.bool().unsqueeze(1 if channels_first else -1)
        total = torch.where(valid, x, 0.0).sum(dim=axes, keepdim=self.keepdims)
        return total / valid.to(x.dtype).sum(dim=axes, keepdim=self.keepdims)

    def extra_repr(self) -> str:
        return f"op={self.op!r}, keepdims={self.keepdims}, data_format={self.data_format!r}"


__all__ = ["BatchNorm", "GlobalPool", "LayerNorm", "Pool"]
