"""Convolution conventions every reader and builder shares: kernel layouts and padding.

Keras stores a kernel as (``*kernel_size``, input channels / groups, filters), torch and
ONNX as (filters, input channels / groups, ``*kernel_size``). Keras's ``"same"`` padding is
TensorFlow's: enough zeros for ``ceil(size / stride)`` outputs, the odd one at the end;
with stride 1 that is ``dilation * (kernel - 1)`` in all, whatever the size.

A transposed convolution's kernel is (``*kernel_size``, filters, input channels) in Keras
and (input channels, filters, ``*kernel_size``) in torch and ONNX: the same two functions
turn one into the other. Its full output spreads each input step over the kernel's span,
``stride`` apart: ``(size - 1) * stride + dilation * (kernel - 1) + 1`` steps; every
framework then crops a number of steps from each end that does not depend on the size (a
negative number at the end adds steps there, where no input step reaches).
"""

from __future__ import annotations

import numpy as np


def torch_kernel(kernel: np.ndarray) -> np.ndarray:
    """A Keras kernel (``*k``, in/groups, out) in torch's layout (out, in/groups, ``*k``).

    Example:
        >>> torch_kernel(np.zeros((3, 5, 2, 4))).shape
        (4, 2, 3, 5)
    """
    return np.ascontiguousarray(torch_kernel_view(kernel))


def torch_kernel_view(kernel: np.ndarray) -> np.ndarray:
    """:func:`torch_kernel` as a view (no copy), for a caller that copies it anyway.

    Example:
        >>> kernel = np.zeros((3, 2, 4))
        >>> view = torch_kernel_view(kernel)
        >>> view.shape, np.shares_memory(view, kernel)
        ((4, 2, 3), True)
    """
    rank = kernel.ndim - 2
    return np.transpose(kernel, (rank + 1, rank, *range(rank)))


def keras_kernel(weight: np.ndarray) -> np.ndarray:
    """A torch weight (out, in/groups, ``*k``) in Keras's layout (``*k``, in/groups, out).

    Example:
        >>> keras_kernel(np.zeros((4, 2, 3, 5))).shape
        (3, 5, 2, 4)
    """
    rank = weight.ndim - 2
    return np.ascontiguousarray(np.transpose(weight, (*range(2, rank + 2), 1, 0)))


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """(before, after) zeros that TensorFlow's ``"same"`` puts around one axis of ``size``.

    Example:
        >>> same_padding(7, 3, 2, 1), same_padding(8, 3, 2, 1), same_padding(5, 4, 1, 1)
        ((1, 1), (0, 1), (1, 2))
    """
    span = dilation * (kernel - 1) + 1
    outputs = -(-size // stride)
    total = max((outputs - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


__all__ = ["keras_kernel", "same_padding", "torch_kernel"]


def transpose_crops(
    padding: str, output_padding: int | None, kernel: int, stride: int, dilation: int
) -> tuple[int, int]:
    """(before, after) steps a Keras transposed convolution crops from its full output.

    Keras asks TensorFlow for ``size * stride + max(span - stride, 0)`` steps (``"valid"``)
    or ``size * stride`` (``"same"``), or with ``output_padding`` for ``(size - 1) * stride
    + span - 2 * pad + output_padding`` (``pad`` is ``span // 2`` for ``"same"``, else 0);
    TensorFlow places them as a ``"valid"`` or ``"same"`` convolution would read them.

    Example:
        >>> transpose_crops("valid", None, 2, 3, 1), transpose_crops("same", None, 4, 2, 1)
        ((0, -1), (1, 1))
        >>> transpose_crops("same", 0, 3, 2, 1), transpose_crops("valid", 1, 3, 2, 1)
        ((1, 1), (0, -1))
    """
    span = dilation * (kernel - 1) + 1
    if output_padding is None:
        extra = max(span - stride, 0) if padding == "valid" else 0
        surplus = span - stride - extra  # full output length less the steps asked for
    else:
        pad = span // 2 if padding == "same" else 0
        surplus = 2 * pad - output_padding
    before = max(surplus, 0) // 2 if padding == "same" else 0
    return before, surplus - before
