"""The torch modules of Keras's convolutions, zero padding and cropping in a whole-model port.

Rules of this module:

- Each module takes and returns the Keras layer's layout: a channels-last layer moves the
  channels to axis 1 for torch's convolution and back, so the port's inputs and outputs
  are the Keras model's.
- Parameters are torch's: ``weight`` (filters, input channels / groups, ``*kernel_size``)
  and ``bias``, as ``nn.Conv1d``/``nn.Conv2d`` name them.
- Padding is explicit (``F.pad``) and convolutions run unpadded: torch's ``padding="same"``
  refuses strides above 1 and cannot put TensorFlow's odd zero at the end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from ..adapters.torch.explicit import TORCH_ACTIVATIONS
from ..convolution import same_padding

_CONVOLUTIONS = {1: functional.conv1d, 2: functional.conv2d}
_TRANSPOSED = {1: functional.conv_transpose1d, 2: functional.conv_transpose2d}


# Non-negative axes in permute: PyTorch's ONNX export writes movedim(-1, 1) as an invalid
# Transpose (perm with -1).
def _to_channels_first(x: torch.Tensor, data_format: str) -> torch.Tensor:
    if data_format != "channels_last":
        return x
    return x.permute(0, x.dim() - 1, *range(1, x.dim() - 1))


def _to_keras(y: torch.Tensor, data_format: str) -> torch.Tensor:
    return y.permute(0, *range(2, y.dim()), 1) if data_format == "channels_last" else y


def activate(name: str, x: torch.Tensor) -> torch.Tensor:
    """A Keras layer's activation ``name`` on ``x`` (``softmax`` over the last axis)."""
    if name == "softmax":
        return torch.softmax(x, dim=-1)
    return TORCH_ACTIVATIONS[name](x)


def _pad_arguments(pairs: list[tuple[int, int]]) -> list[int]:
    """``F.pad``'s flat list (last axis first) of (before, after) pairs in axis order."""
    return [size for pair in reversed(pairs) for size in pair]


def _strided_same(size: Any, kernel: int, stride: int, dilation: int) -> tuple[Any, Any]:
    """TensorFlow's ``"same"`` zeros for a traced size too: no comparison (it would be
    frozen into an export) and no division of negatives (ONNX's ``Div`` truncates)."""
    outputs = (size + stride - 1) // stride
    missing = (outputs - 1) * stride + dilation * (kernel - 1) + 1 - size
    total = (missing + abs(missing)) // 2  # max(missing, 0)
    return total // 2, total - total // 2


class Convolution(nn.Module):
    """A Keras ``Conv1D``/``Conv2D``: zeros as its ``padding`` says, torch's conv, activation.

    Args:
        options: the ``conv`` record's options (:class:`~xframe_bilstm.graph.LayerRecord`).
        weight: the kernel in torch's layout.
        bias: the bias, or None.
    """

    def __init__(
        self, options: Mapping[str, Any], weight: torch.Tensor, bias: torch.Tensor | None
    ) -> None:
        super().__init__()
        self.rank = int(options["rank"])
        self.kernel_size = tuple(int(k) for k in options["kernel_size"])
        self.strides = tuple(int(s) for s in options["strides"])
        self.dilation_rate = tuple(int(d) for d in options["dilation_rate"])
        self.padding = str(options["padding"])
        self.groups = int(options["groups"])
        self.data_format = str(options["data_format"])
        self.activation = str(options["activation"])
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)

    def _pads(self, x: torch.Tensor) -> list[tuple[int, int]]:
        """(before, after) per spatial axis of ``x`` (channels first)."""
        pads = []
        for axis, (k, s, d) in enumerate(zip(self.kernel_size, self.strides, self.dilation_rate)):
            if self.padding == "valid":
                pads.append((0, 0))
            elif self.padding == "causal":
                pads.append((d * (k - 1), 0))
            elif s == 1:  # the amount does not depend on the size
                pads.append(same_padding(1, k, 1, d))
            else:
                pads.append(_strided_same(x.shape[2 + axis], k, s, d))
        return pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _to_channels_first(x, self.data_format)
        pads = self._pads(x)
        if any(any(pair) for pair in pads):
            x = functional.pad(x, _pad_arguments(pads))
        y = _CONVOLUTIONS[self.rank](
            x, self.weight, self.bias, self.strides, 0, self.dilation_rate, self.groups
        )
        return activate(self.activation, _to_keras(y, self.data_format))

    def extra_repr(self) -> str:
        filters, per_group = self.weight.shape[:2]
        return (
            f"{per_group * self.groups}, {filters}, kernel_size={self.kernel_size}, "
            f"strides={self.strides}, padding={self.padding!r}, "
            f"dilation_rate={self.dilation_rate}, groups={self.groups}, "
            f"bias={self.bias is not None}, data_format={self.data_format!r}, "
            f"activation={self.activation!r}"
        )


class ConvolutionTranspose(nn.Module):
    """A Keras ``Conv1DTranspose``/``Conv2DTranspose``: torch's transposed convolution
    unpadded (its full output), the record's ``crops``, the bias, the activation.

    Args:
        options: the ``conv_transpose`` record's options.
        weight: the kernel in torch's layout (input channels, filters, ``*kernel_size``),
            ``nn.ConvTranspose1d/2d``'s.
        bias: the bias, or None.
    """

    def __init__(
        self, options: Mapping[str, Any], weight: torch.Tensor, bias: torch.Tensor | None
    ) -> None:
        super().__init__()
        self.strides = tuple(int(s) for s in options["strides"])
        self.dilation_rate = tuple(int(d) for d in options["dilation_rate"])
        self.crops = tuple((int(a), int(b)) for a, b in options["crops"])
        self.data_format = str(options["data_format"])
        self.activation = str(options["activation"])
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _to_channels_first(x, self.data_format)
        transposed = _TRANSPOSED[len(self.crops)]
        y = transposed(x, self.weight, None, self.strides, dilation=self.dilation_rate)
        # F.pad crops where its amounts are negative: the crops are the pads' negatives.
        y = functional.pad(y, [-crop for crop in _pad_arguments(list(self.crops))])
        if self.bias is not None:
            y = y + self.bias.reshape(-1, *[1] * len(self.crops))
        return activate(self.activation, _to_keras(y, self.data_format))

    def extra_repr(self) -> str:
        channels, filters = self.weight.shape[:2]
        return (
            f"{channels}, {filters}, kernel_size={tuple(self.weight.shape[2:])}, "
            f"strides={self.strides}, dilation_rate={self.dilation_rate}, crops={self.crops}, "
            f"bias={self.bias is not None}, data_format={self.data_format!r}, "
            f"activation={self.activation!r}"
        )


class PadOrCrop(nn.Module):
    """Keras ``ZeroPadding1D`` (``op="pad"``) or ``Cropping1D`` (``op="crop"``) on the
    spatial axes, one (before, after) pair each."""

    def __init__(self, op: str, pairs: tuple[tuple[int, int], ...], data_format: str) -> None:
        super().__init__()
        self.op, self.pairs, self.data_format = op, tuple(pairs), data_format

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _to_channels_first(x, self.data_format)
        if self.op == "pad":
            y = functional.pad(x, _pad_arguments(list(self.pairs)))
        else:
            for axis, (before, after) in enumerate(self.pairs, start=2):
                x = x.narrow(axis, before, x.shape[axis] - before - after)
            y = x
        return _to_keras(y, self.data_format)

    def extra_repr(self) -> str:
        return f"{self.op}={self.pairs}, data_format={self.data_format!r}"


__all__ = ["Convolution", "ConvolutionTranspose", "PadOrCrop", "activate"]
