"""A recurrent layer under a Keras mask of any pattern, in standard ONNX operators.

As the torch port runs it (:mod:`xframe_bilstm.adapters.torch.keras_run`): each row's valid
steps are moved to its front in order (``CumSum``, ``Where``, ``ScatterElements``), the
native node runs on them with ``sequence_lens`` set to the row's count of valid steps, and
its outputs are put back where Keras has them (``GatherElements``, ``Where``): a masked step
repeats the previous output, or is zero where Keras zeroes it (``zero_output_for_mask``, a
``Bidirectional`` returning sequences); a layer returning one step returns its last.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ...canonical import RecurrentLayer
from .builder import GraphBuilder
from .layer_export import final_states, merge_directions, reverse_time
from .node_export import NodeOutputs, recurrent_node


class _Steps(NamedTuple):
    """A mask and its counts: ``valid`` (B, T) bool, ``counts`` (B, T) int64 valid steps up
    to and including each step, ``lengths`` (B, 1) int64 valid steps per row."""

    valid: str
    counts: str
    lengths: str


def _steps(graph: GraphBuilder, mask: str, prefix: str) -> _Steps:
    as_int = graph.one("Cast", [mask], f"{prefix}/mask_int", to=graph.onnx.TensorProto.INT64)
    counts = graph.one("CumSum", [as_int, graph.scalar_index(1)], f"{prefix}/counts")
    last = graph.one("Gather", [counts, graph.ints("last", [-1])], f"{prefix}/lengths", axis=1)
    return _Steps(mask, counts, last)


def _unsqueeze(graph: GraphBuilder, x: str, axis: int, prefix: str) -> str:
    return graph.one("Unsqueeze", [x, graph.ints(f"axes{axis}", [axis])], prefix)


def _compacted(graph: GraphBuilder, x: str, steps: _Steps, prefix: str) -> str:
    """``x`` (B, T, F) with each row's valid steps at its front in order, masked steps after
    them (destination ``counts - 1`` for a valid step, ``length + t - counts`` otherwise)."""
    shape = graph.one("Shape", [steps.valid], f"{prefix}/mask_shape")
    count = graph.one("Gather", [shape, graph.scalar_index(1)], f"{prefix}/steps", axis=0)
    zero, one = graph.scalar_index(0), graph.scalar_index(1)
    times = graph.one("Range", [zero, count, one], f"{prefix}/times")  # (T,)
    before = graph.one("Sub", [steps.counts, one], f"{prefix}/valid_destination")
    after = graph.one("Add", [steps.lengths, times], f"{prefix}/length_plus_t")
    after = graph.one("Sub", [after, steps.counts], f"{prefix}/masked_destination")
    destination = graph.one("Where", [steps.valid, before, after], f"{prefix}/destination")
    x_shape = graph.one("Shape", [x], f"{prefix}/x_shape")
    index = _unsqueeze(graph, destination, 2, f"{prefix}/destination3")
    index = graph.one("Expand", [index, x_shape], f"{prefix}/scatter_index")
    zeros = graph.one(
        "ConstantOfShape",
        [x_shape],
        f"{prefix}/zeros",
        value=graph.onnx.numpy_helper.from_array(np.zeros(1, graph.float_dtype)),
    )
    return graph.one("ScatterElements", [zeros, index, x], f"{prefix}/compacted", axis=1)


def _at(graph: GraphBuilder, y: str, index: str, prefix: str) -> str:
    """``y[b, index[b, t]]`` for (B, T, H) ``y`` and (B, T) ``index``, negatives read as 0."""
    index = graph.one("Max", [index, graph.scalar_index(0)], f"{prefix}/index")
    index = _unsqueeze(graph, index, 2, f"{prefix}/index3")
    index = graph.one("Expand", [index, graph.one("Shape", [y], f"{prefix}/shape")], prefix)
    return graph.one("GatherElements", [y, index], f"{prefix}/gathered", axis=1)


def _where(graph: GraphBuilder, keep: str, y: str, prefix: str) -> str:
    """``y`` where ``keep`` (B, T) or (B, 1) holds, else zeros."""
    zero = graph.constant("zero_float", np.zeros((), graph.float_dtype))
    return graph.one("Where", [_unsqueeze(graph, keep, 2, f"{prefix}/keep3"), y, zero], prefix)


def _step(graph: GraphBuilder, y: str, step: int, prefix: str) -> str:
    """Step ``step`` (negative from the end) of (B, T, H) ``y``: (B, H)."""
    return graph.one("Gather", [y, graph.scalar_index(step)], prefix, axis=1)


def masked_recurrent(
    graph: GraphBuilder,
    layer: RecurrentLayer,
    prefix: str,
    x: str,
    mask: str,
    *,
    return_sequences: bool,
) -> str:
    """What Keras's layer returns on batch-first ``x`` (B, T, F) under ``mask`` (B, T).

    Rows may hold no valid step: the node then runs none of them, and Keras's outputs
    there are zeros.
    """
    steps, node = _masked_node(graph, layer, prefix, x, mask, ())
    return _keras_output(graph, layer, prefix, steps, node, return_sequences)


def masked_recurrent_states(
    graph: GraphBuilder,
    layer: RecurrentLayer,
    prefix: str,
    x: str,
    mask: str,
    states: Sequence[str],
    *,
    return_sequences: bool,
) -> list[str]:
    """:func:`masked_recurrent` from initial ``states`` (Keras order; zeros when empty),
    then the final states in Keras order: each row's after its last valid step, its
    initial ones where it has none."""
    steps, node = _masked_node(graph, layer, prefix, x, mask, states)
    output = _keras_output(graph, layer, prefix, steps, node, return_sequences)
    zero = graph.constant("zero_float", np.zeros((), graph.float_dtype))
    started = graph.one("Greater", [steps.lengths, graph.scalar_index(0)], f"{prefix}/ran")
    finals = [
        graph.one("Where", [started, final, states[index] if states else zero], f"{final}/kept")
        for index, final in enumerate(final_states(graph, layer, prefix, node))
    ]
    return [output, *finals]


def _masked_node(
    graph: GraphBuilder,
    layer: RecurrentLayer,
    prefix: str,
    x: str,
    mask: str,
    states: Sequence[str],
) -> tuple[_Steps, NodeOutputs]:
    """The layer's node run on each row's valid steps, moved to the front."""
    steps = _steps(graph, mask, prefix)
    compacted = _compacted(graph, x, steps, prefix)
    sequence = graph.one("Transpose", [compacted], f"{prefix}/time_major", perm=[1, 0, 2])
    lengths = graph.one(
        "Reshape", [steps.lengths, graph.ints("shape_rows", [-1])], f"{prefix}/lengths_rows"
    )
    lengths = graph.one("Cast", [lengths], f"{prefix}/lengths32", to=graph.onnx.TensorProto.INT32)
    return steps, recurrent_node(graph, layer, prefix, sequence, states, lengths)


def _keras_output(
    graph: GraphBuilder,
    layer: RecurrentLayer,
    prefix: str,
    steps: _Steps,
    node: NodeOutputs,
    return_sequences: bool,
) -> str:
    """The output Keras returns, from the node's over the compacted steps."""
    # (T, dirs, B, H) -> (dirs, B, T, H): each direction batch-first, over the compacted steps.
    y = graph.one("Transpose", [node.y], f"{prefix}/dirs_b_t_h", perm=[1, 2, 0, 3])
    directions = [
        graph.one("Gather", [y, graph.scalar_index(d)], f"{prefix}/direction{d}", axis=0)
        for d in range(len(layer.weights))
    ]
    one = graph.scalar_index(1)
    previous = graph.one("Sub", [steps.counts, one], f"{prefix}/previous")  # counts - 1
    if layer.direction == "bidirectional":
        if return_sequences:  # Keras zeroes masked steps of both halves here
            halves = [
                _where(
                    graph,
                    steps.valid,
                    _at(graph, y, previous, f"{prefix}/at{d}"),
                    f"{prefix}/valid{d}",
                )
                for d, y in enumerate(directions)
            ]
            return merge_directions(graph, layer, prefix, halves, feature_axis=2)[0]
        # The final states: after the last valid step, and after the first.
        zero = graph.scalar_index(0)
        started = graph.one("Greater", [steps.lengths, zero], f"{prefix}/started")  # (B, 1)
        forward = _step(
            graph,
            _at(graph, directions[0], previous, f"{prefix}/at0"),
            -1,
            f"{prefix}/last_forward",
        )
        backward = _step(graph, directions[1], 0, f"{prefix}/first_backward")
        finals = [
            graph.one(
                "Where",
                [started, h, graph.constant("zero_float", np.zeros((), graph.float_dtype))],
                f"{prefix}/final{d}",
            )
            for d, h in enumerate((forward, backward))
        ]
        return merge_directions(graph, layer, prefix, finals, feature_axis=1)[0]
    (output,) = directions
    if layer.direction == "forward":
        # A masked step repeats the previous output (zeros before the first valid one).
        keep = steps.valid
        if not layer.zero_masked_outputs:
            keep = graph.one("Greater", [steps.counts, graph.scalar_index(0)], f"{prefix}/began")
        sequence = _where(
            graph, keep, _at(graph, output, previous, f"{prefix}/at"), f"{prefix}/outputs"
        )
        return sequence if return_sequences else _step(graph, sequence, -1, f"{prefix}/last")
    # go_backwards: read from the end, a masked step repeats the output of the next valid
    # step; Keras returns the outputs in processing order (reversed in time).
    keep, index = steps.valid, previous
    if not layer.zero_masked_outputs:
        ahead = graph.one("Less", [steps.counts, steps.lengths], f"{prefix}/ahead")
        keep = graph.one("Or", [steps.valid, ahead], f"{prefix}/keep")
        index = graph.one("Where", [steps.valid, previous, steps.counts], f"{prefix}/index")
    sequence = _where(graph, keep, _at(graph, output, index, f"{prefix}/at"), f"{prefix}/outputs")
    if not return_sequences:
        return _step(graph, sequence, 0, f"{prefix}/last")
    return reverse_time(graph, sequence, prefix, axis=1)
