"""Batch-major tensors of a captured ``forward`` with their batch and time axes merged,
(batch * time, ...), read as the (batch, time, ...) tensors of the Keras port.

Per-word character models merge the two to run a module over each step on its own: a
tagger's ``chars.view(B * T, W)`` → Embedding → Conv1d → max over the characters →
``.view(B, T, -1)``. A Keras tensor keeps its batch axis apart, so such a tensor is read as
the record computing the same numbers with the two axes kept:

- Which tensors are merged is read from the two captures' shapes: a reshape merging the
  batch and time axes of a tensor makes a first axis of batch × steps in both captures,
  and every tensor whose first axis has that size in both is merged. Their shapes are kept
  as (batch, time, ...), as their records compute them, so the reshape merging them and
  the one splitting them back compute nothing.
- Operations with axis arguments are read with them counted on the records' axes, one
  further; one over the merged axis itself is refused. A permute keeps the merged axis
  first. Elementwise operations read their operands as they are, all merged or none.
- A module computing each position of its input's leading axes on its own (an Embedding,
  a Linear, a LayerNorm over the last axis, an activation, dropout) is applied as it is; a
  convolution, pooling or batch normalization over the merged rows is applied to each step,
  wrapped in ``TimeDistributed`` records, and so is a recurrent module whose output alone
  is used (its states given or used are refused).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .._imports import require
from ..graph import LayerRecord
from .capture_states import state_entry
from .capture_tensors import RESHAPES, Tensors, Unsupported, op_name
from .capture_time_major import (
    AXIS_ARGUMENT,
    PERMUTES,
    OnRecordAxes,
    axes_source,
    permute_dims,
    with_axes_moved,
)

_MERGED = "a tensor whose batch and time axes are merged, (batch * time, ...)"


def mark_merged_steps(graph: Any, tensors: Tensors) -> None:
    """Find the merged tensors and give them the (batch, time, ...) shapes of the records
    computing them."""
    steps: dict[tuple[int, int], tuple[int, int]] = {}  # merged sizes -> the steps merged
    for node in graph.nodes:
        if node.op != "call_function" or op_name(node) not in RESHAPES:
            continue
        x = node.args[0]
        own, made = tensors.shapes.get(getattr(x, "name", "")), tensors.shapes.get(node.name)
        if own is None or made is None or tensors.is_swapped(x):
            continue
        (own_first, own_second), (made_first, made_second) = own, made
        if own_second is None or made_second is None:
            continue
        pairs = zip((own_first, own_second), (made_first, made_second), tensors.batches)
        if all(  # a squeeze of an axis of 1 (B, 1, T) merges nothing
            len(o) >= 3 and o[0] == batch and o[1] > 1 and m == (o[0] * o[1], *o[2:])
            for o, m, batch in pairs
        ):
            steps[(made_first[0], made_second[0])] = (own_first[1], own_second[1])
    for name, (first, second) in list(tensors.shapes.items()):
        if second is None or not first or not second or name in tensors.held:
            continue
        merged = steps.get((first[0], second[0]))
        if merged is not None:
            tensors.merged.add(name)
            tensors.shapes[name] = (
                (tensors.batches[0], merged[0], *first[1:]),
                (tensors.batches[1], merged[1], *second[1:]),
            )


def touches_merged(node: Any, tensors: Tensors) -> bool:
    """Whether ``node`` reads or computes a merged tensor."""
    return tensors.is_merged(node) or any(tensors.is_merged(n) for n in node.all_input_nodes)


def merged_on_record_axes(node: Any, tensors: Tensors) -> Any:
    """``node`` as the records read it: its axis arguments counted on the records' axes.

    Raises:
        Unsupported: an operation mixing merged tensors with others, or over the merged
            axis.
    """
    op, torch = op_name(node), require("torch")
    if op in RESHAPES:
        return node  # merging, splitting back, or reshaping what follows the merged axis
    operands = [
        n
        for n in node.all_input_nodes
        if not tensors.holds(n) and isinstance(n.meta.get("val"), torch.Tensor)
    ]
    if op in AXIS_ARGUMENT and all(tensors.is_merged(n) for n in operands):
        return _axis_arguments(node, tensors)  # over the merged axis itself: refused there
    computed = [node] if isinstance(node.meta.get("val"), torch.Tensor) else []  # not max's pair
    if len({tensors.is_merged(n) for n in [*operands, *computed]}) > 1:
        raise Unsupported(f"applies {op} to {_MERGED} and to a tensor of other axes")
    if op in PERMUTES:
        return _permute(node, tensors)
    return node


def module_on_merged(
    path: str, child: Any, given: Any, tensors: Tensors, *, states: bool = False
) -> bool:
    """Whether a call of ``child`` on ``given`` applies to each step (its records then
    wrapped by :func:`per_step`); False for a module applied as it is. ``states``: whether
    the call is given or gives a recurrent module's states.

    Raises:
        Unsupported: an attention module or a cell over merged steps, or a recurrent module
            whose states are used.
    """
    if not tensors.is_merged(given):
        return False
    nn = require("torch").nn
    kind = type(child).__name__
    if isinstance(child, (nn.RNNCellBase, nn.MultiheadAttention)):
        raise Unsupported(f"applies {path!r} ({kind}) to {_MERGED}")
    if isinstance(child, nn.RNNBase) and states:
        raise Unsupported(f"passes initial states to {path!r} ({kind}) run over {_MERGED}")
    per_row = (nn.Embedding, nn.Linear, nn.Dropout, nn.Identity)
    if isinstance(child, per_row) or type(child).__module__ == nn.modules.activation.__name__:
        return False
    if isinstance(child, nn.LayerNorm):
        return len(child.normalized_shape) > tensors.rank(given) - 2
    return True


def per_step(made: list[LayerRecord]) -> list[LayerRecord]:
    """Each record applied to each step: a ``TimeDistributed`` record wrapping it."""
    wrapped = []
    for record in made:
        options = {"layer": dataclasses.replace(record, name=f"{record.name}_step")}
        wrapped.append(
            LayerRecord(record.name, "time_distributed", "TimeDistributed", record.inputs, options)
        )
    return wrapped


def states_per_step(
    path: str, child: Any, states: list[Any], made: list[LayerRecord], tensors: Tensors, names: Any
) -> list[LayerRecord]:
    """The final states ``h_n[k]`` of a recurrent module run over each step (``made``: its
    records wrapped per step, the last one's output (B, T, W, directions * H)), read from
    that output: with no padding in each step's run, the forward direction's state is its
    output at the last position, the backward one's at the first. Each state node's users
    ``h_n[k]`` are named after the records selecting them.

    Raises:
        Unsupported: a cell state, a state of a lower layer, or the states used whole.
    """
    directions, units = 2 if child.bidirectional else 1, int(child.hidden_size)
    count = child.num_layers * directions
    records: list[LayerRecord] = []
    for state in states:
        if int(state.args[1]) != 1:
            raise Unsupported(f"uses the cell states of {path!r} run over {_MERGED}")
        for user in state.users:
            k = state_entry(state, user, count)
            if k is None or k < count - directions:
                raise Unsupported(
                    f"uses states of {path!r} run over {_MERGED} other than its last layer's "
                    "h_n[k], one entry at a time"
                )
            backward = k % directions == 1
            at = names(f"{path}_h_n_{k}")
            step = {"axis": 2, "start": 0 if backward else -1, "stop": None, "step": 1}
            records.append(
                LayerRecord(at, "slice", "select", (made[-1].name,), {**step, "keep_axis": False})
            )
            if directions == 2:  # its half of the features: forward first
                start = units if backward else 0
                half = {"axis": 2, "start": start, "stop": start + units, "step": 1}
                half["keep_axis"] = True
                records.append(LayerRecord(names(f"{at}_half"), "slice", "slice", (at,), half))
            tensors.names[user] = records[-1].name
    return records


def _permute(node: Any, tensors: Tensors) -> Any:
    torch = require("torch")
    x = node.args[0]
    dims = permute_dims(node, tensors.rank(x) - 1)  # the merged tensor's own axes
    if dims[0] != 0:
        raise Unsupported(f"applies {op_name(node)} moving the merged axis of {_MERGED}")
    on_record = [0, 1, *(dim + 1 for dim in dims[1:])]
    return OnRecordAxes(node, (x, on_record), {}, target=torch.ops.aten.permute.default)


def _axis_arguments(node: Any, tensors: Tensors) -> Any:
    op, rank = op_name(node), tensors.rank(axes_source(node)) - 1

    def move(dim: int) -> int:
        if dim % rank == 0:
            raise Unsupported(f"applies {op} over the merged axis of {_MERGED}")
        return dim % rank + 1

    moved = with_axes_moved(node, move)
    if moved is None:
        raise Unsupported(f"applies {op} over every axis of {_MERGED}")
    return moved


__all__ = [
    "mark_merged_steps",
    "merged_on_record_axes",
    "module_on_merged",
    "per_step",
    "states_per_step",
    "touches_merged",
]
