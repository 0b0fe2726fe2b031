"""Where a recurrent node's ``Y`` is read only with its directions axis put back.

An ONNX LSTM/GRU/RNN node lays ``Y`` out as (time, directions, batch, hidden); exporters
read it at once as (time, batch, directions, hidden) (torch.onnx's ``Transpose`` of perm
[0, 2, 1, 3] before a ``Reshape`` to (time, batch, directions * hidden)) or, with one
direction, squeeze the directions axis away. torch's recurrent modules give
(time, batch, directions * hidden), so the interpreter can hand over the read layout
directly: no batch axis moves, and ``torch.export`` captures the module as the torch code
the graph was exported from. Imports no framework.
"""

from __future__ import annotations

from typing import Any

from .nodes import node_attributes
from .vocabulary import CELL_BY_OP

# How ``Y`` is handed over: (time, batch, directions, hidden), or (time, batch, hidden).
BATCH_FIRST_DIRECTIONS, SQUEEZED = "batch-first-directions", "squeezed"
_BATCH_BEFORE_DIRECTIONS = [0, 2, 1, 3]


def folded_readers(graph: Any, constants: dict[str, Any]) -> tuple[dict[str, str], set[str]]:
    """For each time-major recurrent node whose ``Y`` is only transposed to (time, batch,
    directions, hidden) or only squeezed on its directions axis: the node's first output
    name -> its form, and the outputs of the reading nodes, which pass their input on."""
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    forms: dict[str, str] = {}
    passed: set[str] = set()
    for node in graph.node:
        if node.op_type not in CELL_BY_OP or node_attributes(node).get("layout", 0) != 0:
            continue
        y = node.output[0] if node.output else ""
        reading = readers.get(y, [])
        if not y or y in outputs or not reading:
            continue
        kinds = {_reading_kind(reader, constants) for reader in reading}
        one_direction = node_attributes(node).get("direction", "forward") != "bidirectional"
        if kinds == {BATCH_FIRST_DIRECTIONS} or (kinds == {SQUEEZED} and one_direction):
            forms[y] = str(kinds.pop())
            passed |= {reader.output[0] for reader in reading}
    return forms, passed


def _reading_kind(node: Any, constants: dict[str, Any]) -> str | None:
    attributes = node_attributes(node)
    if node.op_type == "Transpose" and list(attributes.get("perm", [])) == _BATCH_BEFORE_DIRECTIONS:
        return BATCH_FIRST_DIRECTIONS
    if node.op_type == "Squeeze":
        axes = attributes.get("axes")
        if axes is None and len(node.input) > 1:
            axes = constants.get(node.input[1])
        if axes is not None and [int(a) for a in list(axes)] == [1]:
            return SQUEEZED
    return None
