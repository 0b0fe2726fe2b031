"""A torch packed sequence in a whole-model export (:mod:`.graph_export`).

``lengths_mask`` (``pack_padded_sequence``) passes ``x`` on and makes the (B, T) bool mask
``t < lengths[b]`` from an integer graph input; recurrent layers under it run as under any
Keras mask (:mod:`.masked`, ``sequence_lens`` on the row's valid steps). ``end_mask``
(``pad_packed_sequence``) passes its input on and ends the mask. Neither adds a node for
the value, so a graph reads as the layers around them. ``valid_steps`` (a mask written in
a torch ``forward``) is that mask as numbers, a tensor of its own.
"""

from __future__ import annotations

from ...graph import LayerRecord
from .builder import GraphBuilder

Emitted = tuple[str, str | None]  # a layer's output, and its (B, T) bool mask or None


def emit_lengths_mask(builder: GraphBuilder, record: LayerRecord, x: str, lengths: str) -> Emitted:
    """``x`` unchanged, masked where ``t >= lengths[b]`` (right padding)."""
    return x, _valid(builder, record.name, x, lengths)


def emit_valid_steps(builder: GraphBuilder, record: LayerRecord, x: str, lengths: str) -> Emitted:
    """The mask ``t < lengths[b]`` as numbers of the graph's float type; no mask after."""
    to = int(builder.onnx.helper.np_dtype_to_tensor_dtype(builder.float_dtype))
    valid = _valid(builder, record.name, x, lengths)
    return builder.one("Cast", [valid], record.name, to=to), None


def _valid(builder: GraphBuilder, prefix: str, x: str, lengths: str) -> str:
    """The (B, T) bool ``t < lengths[b]`` over ``x``'s steps (its axis 1), for lengths of
    any integer type."""
    shape = builder.one("Shape", [x], f"{prefix}/shape")
    steps = builder.one("Gather", [shape, builder.scalar_index(1)], f"{prefix}/steps", axis=0)
    zero, one = builder.scalar_index(0), builder.scalar_index(1)
    times = builder.one("Range", [zero, steps, one], f"{prefix}/times")  # (T,)
    int64 = builder.onnx.TensorProto.INT64
    rows = builder.one("Cast", [lengths], f"{prefix}/lengths64", to=int64)
    rows = builder.one("Unsqueeze", [rows, builder.ints("axes1", [1])], f"{prefix}/rows")
    return builder.one("Less", [times, rows], f"{prefix}/mask")  # (B, T)


# One-input kinds, as :mod:`.graph_export` calls its emitters.
EMITTERS = {"end_mask": lambda b, r, x, m: (x, None)}

__all__ = ["EMITTERS", "emit_lengths_mask", "emit_valid_steps"]
