"""``Resize`` (and opset 9's ``Upsample``) in ``nearest`` mode, run with torch ops.

Each output position ``i`` of an axis reads the input position the ONNX definition gives:
the coordinate transformation (``half_pixel`` by default, ``asymmetric``,
``pytorch_half_pixel``, ``align_corners``, ``tf_half_pixel_for_nn``; opset 10 reads
``i / scale``) rounded by ``nearest_mode`` (``round_prefer_floor`` by default,
``round_prefer_ceil``, ``floor``, ``ceil``) and clamped to the axis. Where those positions
repeat each input ``k`` times in order (torch.onnx's ``F.interpolate(scale_factor=k)``),
the axis is ``repeat_interleave``d, which a capture reads as upsampling; other positions
are gathered. ``linear`` and ``cubic`` modes are refused by name.

torch is reached through :attr:`.op_call.OpCall.torch`, so importing this module imports no
framework.
"""

from __future__ import annotations

import math
from typing import Any

from .op_call import OpCall

_COORDINATES = {
    "half_pixel": lambda i, scale, size, out: (i + 0.5) / scale - 0.5,
    "pytorch_half_pixel": lambda i, scale, size, out: (i + 0.5) / scale - 0.5 if out > 1 else 0.0,
    "asymmetric": lambda i, scale, size, out: i / scale,
    "align_corners": lambda i, scale, size, out: i * (size - 1) / (out - 1) if out > 1 else 0.0,
    "tf_half_pixel_for_nn": lambda i, scale, size, out: (i + 0.5) / scale,
}
_ROUNDING = {
    "round_prefer_floor": lambda x: math.ceil(x - 0.5),
    "round_prefer_ceil": lambda x: math.floor(x + 0.5),
    "floor": math.floor,
    "ceil": math.ceil,
}


def resize(call: OpCall) -> tuple[Any, ...]:
    x = call.args[0]
    mode = call.attributes.get("mode", "nearest")
    if mode != "nearest":
        raise call.refuse(f"mode={mode!r}; only nearest-neighbour resizing is run")
    old = call.opset < 11 or call.node.op_type == "Upsample"
    coordinates = "asymmetric" if old else call.attributes.get("coordinate_transformation_mode")
    rounding = "floor" if old else call.attributes.get("nearest_mode", "round_prefer_floor")
    coordinates = coordinates or "half_pixel"
    if coordinates not in _COORDINATES or rounding not in _ROUNDING:
        raise call.refuse(
            f"coordinate_transformation_mode={coordinates!r} with nearest_mode={rounding!r}"
        )
    for axis, size, out, scale in _axes(call, x):
        transform, rounded = _COORDINATES[coordinates], _ROUNDING[rounding]
        positions = [
            min(max(rounded(transform(i, scale, size, out)), 0), size - 1) for i in range(out)
        ]
        x = _take(call.torch, x, axis, positions, size)
    return (x,)


def _axes(call: OpCall, x: Any) -> list[tuple[int, int, int, float]]:
    """(axis, input size, output size, scale) of each axis that changes size."""
    rank = x.dim()
    if call.node.op_type == "Upsample" or call.opset < 11:
        scales, sizes, axes = _floats(call.arg(1), call.attributes.get("scales")), None, None
    else:
        scales, sizes = _floats(call.arg(2)), call.ints("", 3)
        axes = call.attributes.get("axes")
    axes = [int(a) % rank for a in axes] if axes else list(range(rank))
    if call.attributes.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise call.refuse("keep_aspect_ratio_policy other than stretch")
    found = []
    for k, axis in enumerate(axes):
        size = int(x.shape[axis])
        if sizes:
            out, scale = sizes[k], sizes[k] / size
        elif scales:
            out, scale = math.floor(size * scales[k]), scales[k]
        else:
            raise call.refuse("neither scales nor sizes given")
        if out != size or scale != 1.0:
            found.append((axis, size, out, scale))
    return found


def _floats(value: Any, attribute: Any = None) -> list[float] | None:
    """The floats of an input (an empty one is absent), else of an attribute."""
    if value is not None and value.reshape(-1).shape[0] > 0:
        return [float(v) for v in value.reshape(-1).tolist()]
    return [float(v) for v in attribute] if attribute else None


def _take(torch: Any, x: Any, axis: int, positions: list[int], size: int) -> Any:
    """``x`` read at ``positions`` along ``axis``: each element repeated in order where
    that is what the positions say, else gathered."""
    if positions and len(positions) % size == 0:
        times = len(positions) // size
        if positions == [i // times for i in range(len(positions))]:
            return x.repeat_interleave(times, dim=axis)
    index = torch.tensor(positions, dtype=torch.long, device=x.device)
    return x.index_select(axis, index)
