"""A torch packed sequence in a whole-model export (:mod:`.graph_export`).

``lengths_mask`` (``pack_padded_sequence``) passes ``x`` on and makes the (B, T) bool mask
``t < lengths[b]`` from an integer graph input; recurrent layers under it run as under any
Keras mask (:mod:`.masked`, ``sequence_lens`` on the row's valid steps). ``end_mask``
(``pad_packed_sequence``) passes its input on and ends the mask. Neither adds a node for
the value, so a graph reads as the layers around them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...graph import LayerRecord, ModelGraph
from .builder import GraphBuilder

Emitted = tuple[str, str | None]  # a layer's output, and its (B, T) bool mask or None


def lengths_input_type(onnx: Any, graph: ModelGraph, name: str) -> int | None:
    """The ONNX element type of graph input ``name`` where a ``lengths_mask`` reads it as
    lengths: its declared integer dtype (int64 where it declares none), else None."""
    if not graph.holds_lengths(name):
        return None
    declared = np.dtype(graph.layer(name).options.get("dtype") or "int64")
    dtype = declared if declared.kind in "iu" else np.dtype(np.int64)
    return int(onnx.helper.np_dtype_to_tensor_dtype(dtype))


def emit_lengths_mask(builder: GraphBuilder, record: LayerRecord, x: str, lengths: str) -> Emitted:
    """``x`` unchanged, masked where ``t >= lengths[b]`` (right padding)."""
    prefix = record.name
    shape = builder.one("Shape", [x], f"{prefix}/shape")
    steps = builder.one("Gather", [shape, builder.scalar_index(1)], f"{prefix}/steps", axis=0)
    zero, one = builder.scalar_index(0), builder.scalar_index(1)
    times = builder.one("Range", [zero, steps, one], f"{prefix}/times")  # (T,)
    int64 = builder.onnx.TensorProto.INT64
    rows = builder.one("Cast", [lengths], f"{prefix}/lengths64", to=int64)
    rows = builder.one("Unsqueeze", [rows, builder.ints("axes1", [1])], f"{prefix}/rows")
    return x, builder.one("Less", [times, rows], f"{prefix}/mask")  # (B, T)


# One-input kinds, as :mod:`.graph_export` calls its emitters.
EMITTERS = {"end_mask": lambda b, r, x, m: (x, None)}

__all__ = ["EMITTERS", "emit_lengths_mask", "lengths_input_type"]
