"""Positions repeated in a row along an axis, read from a captured ``forward``.

``x.repeat_interleave(2, dim=1)`` (a vocoder's frames stretched to samples) and
nearest-neighbour upsampling by whole factors (``F.interpolate(x, scale_factor=2)``,
``nn.Upsample(scale_factor=2)`` on (B, C, ...): a detector's frames stretched back to the
input's rate) repeat each position ``k`` times: a ``repeat`` record per axis.
Upsampling to a size, by a fraction, or other than by nearest neighbours is refused.
"""

from __future__ import annotations

from typing import Any

from ..graph import LayerRecord
from .capture_tensors import Tensors, Unsupported, axis_of, op_name


def _repeat(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    """``x.repeat_interleave(repeats, dim)`` with a number of repeats: each position on that
    axis repeated in a row (a vocoder's upsampling of frames to samples)."""
    x = args[0]
    repeats = args[1] if len(args) > 1 else kwargs.get("repeats")
    dim = args[2] if len(args) > 2 else kwargs.get("dim")
    if not isinstance(repeats, int) or isinstance(repeats, bool) or dim is None:
        raise Unsupported(
            "applies repeat_interleave with repeats per position or over the flattened "
            "tensor; repeat every position of one axis the same number of times"
        )
    if repeats == 1:
        return []  # every position once: nothing to compute
    axis = axis_of(tensors, x, int(dim), "repeat_interleave")
    options = {"axis": axis, "repeats": repeats}
    return [LayerRecord(name, "repeat", "repeat_interleave", (tensors.name(x),), options)]


def _upsample(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    """``F.interpolate(x, scale_factor=k)`` or ``nn.Upsample(scale_factor=k)``, nearest
    neighbours by whole factors on (B, C, ...): each position repeated ``k`` times on its
    axis, a ``repeat`` per axis (a detector's frames stretched back to the input's rate)."""
    size = args[1] if len(args) > 1 else kwargs.get("output_size")
    scales = args[2] if len(args) > 2 else kwargs.get("scale_factors")
    if size is not None or not scales:
        raise Unsupported(f"applies {op_name(node)} to a size; upsample by scale_factor")
    if any(float(s) != int(s) or s < 1 for s in scales):
        raise Unsupported(
            f"applies {op_name(node)} by a fraction ({list(scales)}); nearest neighbours by "
            "whole factors repeat each position"
        )
    records, x = [], tensors.name(args[0])
    factors = [(dim, int(s)) for dim, s in enumerate(scales, start=2) if int(s) > 1]
    for index, (dim, repeats) in enumerate(factors):
        here = name if index == len(factors) - 1 else f"{name}_{dim}"
        options = {"axis": axis_of(tensors, args[0], dim, "upsamples"), "repeats": repeats}
        records.append(LayerRecord(here, "repeat", "upsample_nearest", (x,), options))
        x = here
    return records


HANDLERS = {
    "aten.repeat_interleave": _repeat,
    **{
        f"aten.{prefix}{rank}d": _upsample
        for prefix in ("upsample_nearest", "_upsample_nearest_exact")
        for rank in (1, 2)
    },
}

__all__ = ["HANDLERS"]
