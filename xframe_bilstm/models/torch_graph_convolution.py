"""``nn.Conv1d``/``nn.Conv2d`` and ``nn.ConvTranspose1d/2d`` children read as the records
of a Keras model computing the same.

Rules of this module:

- torch's layout is recorded, not rewritten: a record says ``data_format="channels_first"``
  and the kernel is stored in Keras's layout, so the Keras model takes the torch module's
  (batch, channels, ``*spatial``) inputs as they are.
- ``padding="valid"`` and ``"same"`` are Keras's own (torch's ``"same"`` puts the odd zero
  at the end, as TensorFlow does); explicit padding equal to stride-1 ``"same"`` is recorded
  as ``"same"``, any other as a ``ZeroPadding`` record before a ``"valid"`` convolution.
- Only zero padding exists in Keras: ``padding_mode`` other than ``"zeros"`` is refused by
  name.
- A transposed convolution's ``padding`` crops its full output at both ends and
  ``output_padding`` adds steps back at the end: ``crops`` of ``(padding, padding -
  output_padding)`` per axis. Keras's transposed convolutions have no ``groups``: more than
  one is refused by name.
"""

from __future__ import annotations

from typing import Any

from ..convolution import keras_kernel
from ..errors import UnsupportedFeatureError
from ..graph import LayerRecord


def conv_types(nn: Any) -> tuple[type, ...]:
    """The torch convolution classes read here."""
    return (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d)


def conv_input_options(child: Any, nn: Any) -> dict[str, Any]:
    """The options of the input a first convolution child fixes: its channels."""
    rank = len(child.kernel_size)
    return {"shape": (int(child.in_channels), *[None] * rank), "dtype": "float32"}


def _padding(name: str, child: Any) -> tuple[str, tuple[tuple[int, int], ...] | None]:
    """The Keras ``padding`` of the convolution, and explicit zeros to put before it."""
    if child.padding_mode != "zeros":
        raise UnsupportedFeatureError(
            f"child {name!r} ({type(child).__name__}) has padding_mode={child.padding_mode!r}; "
            "Keras's convolutions pad with zeros only (padding_mode='zeros')"
        )
    if isinstance(child.padding, str):
        return child.padding, None
    pads = tuple(int(p) for p in child.padding)
    if not any(pads):
        return "valid", None
    same = all(
        s == 1 and 2 * p == d * (k - 1)
        for p, s, d, k in zip(pads, child.stride, child.dilation, child.kernel_size)
    )
    if same:
        return "same", None
    return "valid", tuple((p, p) for p in pads)


def conv_records(name: str, child: Any, previous: str, nn: Any) -> list[LayerRecord]:
    """The records of one ``Conv1d``/``Conv2d`` child reading layer ``previous``."""
    from ..adapters.torch import tensor_to_numpy

    kind = type(child).__name__
    if isinstance(child, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
        return [_transposed(name, child, previous)]
    rank = len(child.kernel_size)
    padding, explicit = _padding(name, child)
    records = []
    if explicit is not None:
        pad_name = f"{name}_padding"
        options: dict[str, Any] = {"padding": explicit, "data_format": "channels_first"}
        pad_class = f"ZeroPadding{rank}D"
        records.append(LayerRecord(pad_name, "zero_padding", pad_class, (previous,), options))
        previous = pad_name
    weights = {"kernel": keras_kernel(tensor_to_numpy(child.weight))}
    if child.bias is not None:
        weights["bias"] = tensor_to_numpy(child.bias)
    options = {
        "rank": rank,
        "filters": int(child.out_channels),
        "kernel_size": tuple(int(k) for k in child.kernel_size),
        "strides": tuple(int(s) for s in child.stride),
        "padding": padding,
        "dilation_rate": tuple(int(d) for d in child.dilation),
        "groups": int(child.groups),
        "data_format": "channels_first",
        "activation": "linear",
    }
    records.append(LayerRecord(name, "conv", kind, (previous,), options, weights))
    return records


def _transposed(name: str, child: Any, previous: str) -> LayerRecord:
    """The ``conv_transpose`` record of one ``ConvTranspose1d/2d`` child."""
    from ..adapters.torch import tensor_to_numpy

    kind = type(child).__name__
    where = f"child {name!r} ({kind})"
    if child.padding_mode != "zeros" or child.groups != 1:
        raise UnsupportedFeatureError(
            f"{where} has padding_mode={child.padding_mode!r}, groups={child.groups}; "
            "Keras's transposed convolutions pad with zeros and have no groups"
        )
    weights = {"kernel": keras_kernel(tensor_to_numpy(child.weight))}  # (*k, out, in)
    if child.bias is not None:
        weights["bias"] = tensor_to_numpy(child.bias)
    options = {
        "rank": len(child.kernel_size),
        "filters": int(child.out_channels),
        "kernel_size": tuple(int(k) for k in child.kernel_size),
        "strides": tuple(int(s) for s in child.stride),
        "dilation_rate": tuple(int(d) for d in child.dilation),
        "crops": tuple(
            (int(p), int(p) - int(extra)) for p, extra in zip(child.padding, child.output_padding)
        ),
        "data_format": "channels_first",
        "activation": "linear",
    }
    return LayerRecord(name, "conv_transpose", kind, (previous,), options, weights)


__all__ = ["conv_input_options", "conv_records", "conv_types"]
