"""``F.pad`` with zeros in a captured ``forward``, as a ``zero_padding`` record (Keras's
``ZeroPadding1D``/``ZeroPadding2D``): a causal convolution's steps padded on the left
(``F.pad(x, (k - 1, 0))``), an image padded before a convolution.

torch lists the amounts from the last axis backwards, a (before, after) pair per axis. The
padded axes must be the spatial axes of one layout: the last ones of a channels-first
tensor (B, C, T) or (B, C, H, W), or those between the batch and the last axis of a
channels-last one (B, T, C) (zeros at the end of a sequence's features are the first
layout's, read so). Other modes and values, negative amounts (cropping: slice instead),
the batch axis and axes of no one layout (a sequence's steps and features both) are
refused by name.
"""

from __future__ import annotations

from typing import Any

from ..graph import LayerRecord
from .capture_tensors import Tensors, Unsupported, op_name


def pad_records(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    """The ``zero_padding`` record of an ``aten.pad`` or ``aten.constant_pad_nd`` node;
    none where it pads nothing."""
    op = op_name(node)
    x, amounts = args[0], [int(amount) for amount in args[1]]
    if op == "aten.pad":
        mode = args[2] if len(args) > 2 else kwargs.get("mode", "constant")
        value = args[3] if len(args) > 3 else kwargs.get("value")
    else:
        mode, value = "constant", args[2] if len(args) > 2 else kwargs.get("value", 0)
    if mode != "constant" or value not in (None, 0):
        shown = f"mode {mode!r}" if mode != "constant" else f"the value {value}"
        raise Unsupported(f"applies {op} with {shown}; zeros are padded")
    if any(amount < 0 for amount in amounts):
        raise Unsupported(f"applies {op} with negative amounts {amounts}; slice to crop")
    rank = tensors.rank(x)
    pairs = {rank - 1 - i: (amounts[2 * i], amounts[2 * i + 1]) for i in range(len(amounts) // 2)}
    padded = {axis for axis, pair in pairs.items() if pair != (0, 0)}
    if not padded:
        return []
    if (tensors.is_swapped(x) or tensors.is_merged(x)) and padded != {rank - 1}:
        raise Unsupported(f"applies {op} to a time-major or merged tensor on axes {sorted(padded)}")
    layouts = {"channels_first": range(2, rank), "channels_last": range(1, rank - 1)}
    fits = [layout for layout, axes in layouts.items() if padded <= set(axes)]
    if rank not in (3, 4) or not fits:
        raise Unsupported(
            f"applies {op} on axes {sorted(padded)} of a rank-{rank} tensor; the spatial "
            "axes of a (B, C, T), (B, T, C) or (B, C, H, W) tensor are padded"
        )
    spatial = layouts[fits[0]]
    options = {"padding": tuple(pairs.get(a, (0, 0)) for a in spatial), "data_format": fits[0]}
    cls = f"ZeroPadding{rank - 2}D"
    return [LayerRecord(name, "zero_padding", cls, (tensors.name(x),), options)]


__all__ = ["pad_records"]
