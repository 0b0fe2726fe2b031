"""A canonical layer's outputs as the Keras layer returns them, from its native node's.

:func:`export_layer` adds the node and its glue: the directions merged by ``merge_mode``,
a ``go_backwards`` sequence put back in processing order, and, with ``sequence_lens``, the
last valid output repeated over padding as Keras's masked layers do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ...canonical import RecurrentLayer
from .builder import GraphBuilder
from .node_export import NodeOutputs, recurrent_node


def export_layer(
    graph: GraphBuilder,
    layer: RecurrentLayer,
    prefix: str,
    sequence: str,
    states: Sequence[str],
    lengths: str | None,
    *,
    return_sequences: bool,
    keep_padding: bool,
) -> tuple[Any, ...]:
    """One layer: (output(s) (T, B, F) or (B, F) ..., then its NodeOutputs)."""
    node = recurrent_node(graph, layer, prefix, sequence, states, lengths)
    directions = len(layer.weights)
    if not return_sequences:
        finals = [
            graph.one("Gather", [node.y_h, graph.scalar_index(d)], f"{prefix}/h{d}", axis=0)
            for d in range(directions)
        ]  # each (B, H)
        return (*merge_directions(graph, layer, prefix, finals, feature_axis=1), node)
    if directions == 1:
        # (T, 1, B, H) -> (T, B, H)
        y = graph.one(
            "Reshape",
            [node.y, graph.ints("shape_t_b_h", [0, -1, layer.units])],
            f"{prefix}/sequence",
        )
        if layer.direction == "backward":
            # ONNX "reverse" outputs are aligned with input time; Keras's go_backwards keeps
            # processing order. With lengths too, the full flip is right: ONNX leaves zeros
            # past each length, which become the zeros Keras outputs before its first step.
            return reverse_time(graph, y, prefix), node
        if lengths is not None and keep_padding and not layer.zero_masked_outputs:
            return _carry_last_valid(graph, y, node.y_h, lengths, prefix), node
        return y, node
    if layer.merge_mode == "concat":
        # (T, 2, B, H) -> (T, B, 2, H) -> (T, B, 2H): forward features first, as Keras.
        y = graph.one("Transpose", [node.y], f"{prefix}/y_t_b_dirs_h", perm=[0, 2, 1, 3])
        merged = graph.one(
            "Reshape", [y, graph.ints("shape_t_b_merged", [0, 0, -1])], f"{prefix}/sequence"
        )
        return merged, node
    halves = [
        graph.one("Gather", [node.y, graph.scalar_index(d)], f"{prefix}/y{d}", axis=1)
        for d in range(2)
    ]  # each (T, B, H)
    return (*merge_directions(graph, layer, prefix, halves, feature_axis=2), node)


def merge_directions(
    graph: GraphBuilder, layer: RecurrentLayer, prefix: str, parts: list[str], *, feature_axis: int
) -> tuple[str, ...]:
    """``parts``, one per direction, merged as ``layer.merge_mode`` says (kept apart without)."""
    if len(parts) == 1 or layer.merge_mode is None:
        return tuple(parts)
    mode = layer.merge_mode
    if mode == "concat":
        return (graph.one("Concat", parts, f"{prefix}/concat", axis=feature_axis),)
    if mode == "mul":
        return (graph.one("Mul", parts, f"{prefix}/mul"),)
    total = graph.one("Add", parts, f"{prefix}/sum")
    if mode == "sum":
        return (total,)
    two = graph.constant("two", np.asarray(2.0, dtype=graph.float_dtype))
    return (graph.one("Div", [total, two], f"{prefix}/ave"),)  # Keras: (a + b) / 2


def final_states(
    graph: GraphBuilder, layer: RecurrentLayer, prefix: str, node: NodeOutputs
) -> list[str]:
    """The layer's final states (B, H) in Keras order: h, c per direction."""
    finals = []
    for d in range(len(layer.weights)):
        for kind, source in (("h", node.y_h), ("c", node.y_c)):
            if source is not None:
                finals.append(
                    graph.one(
                        "Gather",
                        [source, graph.scalar_index(d)],
                        f"{prefix}/final_{kind}{d}",
                        axis=0,
                    )
                )
    return finals


def reverse_time(graph: GraphBuilder, sequence: str, prefix: str, axis: int = 0) -> str:
    """Flip ``sequence`` along its time ``axis``: Slice from the last step back, step -1."""
    return graph.one(
        "Slice",
        [
            sequence,
            graph.ints("start_last", [-1]),
            graph.ints("end_before_first", [np.iinfo(np.int64).min]),
            graph.ints(f"axis{axis}", [axis]),
            graph.ints("step_back", [-1]),
        ],
        f"{prefix}/processing_order",
    )


def _carry_last_valid(graph: GraphBuilder, y: str, y_h: str, lengths: str, prefix: str) -> str:
    """Keras's plain masked layers repeat the last valid output over padding.

    onnxruntime leaves zeros past each row's length and puts the state of its last valid
    step in Y_h, so the padded steps take Y_h: ``Where(t < length, Y, Y_h)``.
    """
    shape = graph.one("Shape", [y], f"{prefix}/shape")
    steps = graph.one("Gather", [shape, graph.scalar_index(0)], f"{prefix}/steps", axis=0)
    zero = graph.constant("zero", np.asarray(0, dtype=np.int64))
    one = graph.constant("one", np.asarray(1, dtype=np.int64))
    times = graph.one("Range", [zero, steps, one], f"{prefix}/times")  # (T,)
    times = graph.one(
        "Reshape", [times, graph.ints("shape_column", [-1, 1])], f"{prefix}/times_column"
    )  # (T, 1)
    rows = graph.one("Cast", [lengths], f"{prefix}/lengths64", to=graph.onnx.TensorProto.INT64)
    rows = graph.one(
        "Reshape", [rows, graph.ints("shape_row", [1, -1])], f"{prefix}/lengths_row"
    )  # (1, B)
    valid = graph.one("Less", [times, rows], f"{prefix}/valid")  # (T, B)
    valid = graph.one(
        "Reshape", [valid, graph.ints("shape_t_b_1", [0, 0, 1])], f"{prefix}/valid3"
    )  # (T, B, 1)
    return graph.one("Where", [valid, y, y_h], f"{prefix}/carried")  # Y_h (1, B, H) broadcasts
