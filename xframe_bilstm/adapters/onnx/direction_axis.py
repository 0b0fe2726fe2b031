"""Where a recurrent node's ``Y`` is read only with its directions axis put back.

An ONNX LSTM/GRU/RNN node lays ``Y`` out as (time, directions, batch, hidden); exporters
read it at once as (time, batch, directions, hidden) (torch.onnx's ``Transpose`` of perm
[0, 2, 1, 3] before a ``Reshape`` to (time, batch, directions * hidden)), as (batch, time,
directions, hidden) (perm [2, 0, 1, 3], a batch-major model's) or, with one direction,
squeeze the directions axis away. torch's recurrent modules give (time, batch,
directions * hidden), so the interpreter can hand over the read layout directly: the batch
axis moves at most back to the front, and ``torch.export`` captures the module as the torch
code the graph was exported from. Imports no framework.
"""

from __future__ import annotations

from typing import Any

from .nodes import node_attributes
from .vocabulary import CELL_BY_OP

# How ``Y`` is handed over: (time, batch, directions, hidden), (batch, time, directions,
# hidden), or (time, batch, hidden).
BATCH_FIRST_DIRECTIONS, BATCH_MAJOR, SQUEEZED = "batch-first-directions", "batch-major", "squeezed"
_PERMS = {(0, 2, 1, 3): BATCH_FIRST_DIRECTIONS, (2, 0, 1, 3): BATCH_MAJOR}


Passed = dict[str, "int | None"]  # a reader's output -> the direction it picks, or None


def folded_readers(graph: Any, constants: dict[str, Any]) -> tuple[dict[str, str], Passed]:
    """For each time-major recurrent node whose readers of ``Y`` all take one layout: the
    node's first output name -> that form, and each reader's output -> what it takes of
    the handed-over ``Y``: all of it (None), or one direction's (time, batch, hidden)
    (a ``Gather`` on the directions axis: its index, on the handed-over directions axis)."""
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    forms: dict[str, str] = {}
    passed: Passed = {}
    for node in graph.node:
        attributes = node_attributes(node)
        if node.op_type not in CELL_BY_OP or attributes.get("layout", 0) != 0:
            continue
        y = node.output[0] if node.output else ""
        reading = readers.get(y, [])
        if not y or y in outputs or not reading:
            continue
        hidden = int(attributes.get("hidden_size", 0))
        kinds = [_reading_kind(reader, constants, hidden) for reader in reading]
        one_direction = attributes.get("direction", "forward") != "bidirectional"
        forms_read = {form for form, _ in kinds}
        if forms_read in ({BATCH_FIRST_DIRECTIONS}, {BATCH_MAJOR}) or (
            forms_read == {SQUEEZED} and one_direction
        ):
            forms[y] = str(forms_read.pop())
            passed |= {reader.output[0]: pick for reader, (_, pick) in zip(reading, kinds)}
    return forms, passed


def _reading_kind(
    node: Any, constants: dict[str, Any], hidden: int
) -> tuple[str | None, int | None]:
    """The layout ``node`` reads ``Y`` in, and the direction it picks (None for all)."""
    attributes = node_attributes(node)
    if node.op_type == "Transpose":
        return _PERMS.get(tuple(attributes.get("perm", ()))), None
    if node.op_type == "Squeeze":
        axes = attributes.get("axes")
        if axes is None and len(node.input) > 1:
            axes = constants.get(node.input[1])
        if axes is not None and [int(a) for a in list(axes)] == [1]:
            return SQUEEZED, None
    if node.op_type == "Reshape":  # (T, 1, B, H) to (T, B, H): a squeeze
        target = constants.get(node.input[1])
        if target is not None and [int(v) for v in target.reshape(-1)] == [0, -1, hidden]:
            return SQUEEZED, None
    if node.op_type == "Gather" and attributes.get("axis", 0) == 1:  # one direction
        index = constants.get(node.input[1])
        if index is not None and index.ndim == 0:
            return BATCH_FIRST_DIRECTIONS, int(index)
    return None, None
