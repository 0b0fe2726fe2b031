"""Where a graph sorts its rows by their lengths for its recurrent nodes, and puts them back.

torch.onnx writes ``pack_padded_sequence(x, lengths, enforce_sorted=False)`` as a sort:
``TopK`` of the lengths gives them in order and the order of the rows; a ``Gather`` by
that order sorts the rows, the recurrent nodes run on the sorted rows with the sorted
lengths, and a ``Gather`` by the inverse order (``ScatterElements`` of a ``Range`` into
the order) puts their outputs back. Each row is computed alone, so the rows in their own
order with their own lengths give the same outputs: the capturable interpreter runs the
graph so (the lengths as given, each ``Gather`` by an order passing its input on), and
``torch.export`` captures a packed recurrent module reading the input's lengths, as the
torch code was. What the graph computes between the two ``Gather``s is checked where the
reading is used: against the graph itself on onnxruntime. Imports no framework.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .vocabulary import CELL_BY_OP

_LENGTHS_SLOT = 4  # a recurrent node's sequence_lens
_CASTS = {"Cast", "Identity"}
# What the graph computes from an order: the inverse (``ScatterElements`` of a ``Range``
# as long as the order, into zeros of its shape) and its casts.
_ORDER_OPS = _CASTS | {"ScatterElements", "ConstantOfShape", "Shape", "Size", "Range"}
_ORDER_OPS |= {"ReduceProd", "Gather", "Unsqueeze", "Squeeze"}


@dataclasses.dataclass(frozen=True)
class SortedRows:
    """The sorts of one graph: each ``TopK``'s sorted lengths -> the lengths it sorts; each
    ``Gather`` by an order or its inverse -> the tensor it reorders; the nodes computing
    the orders, which run no more."""

    lengths: dict[str, str] = dataclasses.field(default_factory=dict)
    reordered: dict[str, str] = dataclasses.field(default_factory=dict)
    inner: frozenset[str] = frozenset()


def sorted_rows(graph: Any) -> SortedRows:
    """The sorts of ``graph`` whose sorted lengths only reach recurrent nodes' lengths and
    whose orders only reorder tensors, in both directions (both must be used)."""
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    found = SortedRows()
    for node in graph.node:
        if node.op_type != "TopK" or len(node.output) < 2:
            continue
        values, order = node.output[:2]
        if not _only_lengths(values, readers, outputs):
            continue
        reordered, inner = _orders(order, graph.node, outputs)
        if reordered is None:
            continue
        found = SortedRows(
            {**found.lengths, values: node.input[0]},
            {**found.reordered, **reordered},
            found.inner | inner,
        )
    return found


def _only_lengths(values: str, readers: dict[str, list[Any]], outputs: set[str]) -> bool:
    """Whether sorted lengths reach recurrent nodes' lengths alone, through casts."""
    if values in outputs:
        return False
    for reader in readers.get(values, []):
        if reader.op_type in _CASTS:
            if not _only_lengths(reader.output[0], readers, outputs):
                return False
        elif reader.op_type not in CELL_BY_OP or list(reader.input).index(values) != _LENGTHS_SLOT:
            return False
    return bool(readers.get(values))


def _orders(order: str, nodes: Any, outputs: set[str]) -> tuple[dict[str, str] | None, set[str]]:
    """The ``Gather``s by ``order`` and by its inverse, each output -> the tensor it
    reorders, and the values computed from the order (itself too); None where one of them
    goes anywhere else, or the order is not both applied and undone. ``nodes`` are the
    graph's, in its (topological) order."""
    reordered: dict[str, tuple[str, str]] = {}  # a Gather's output -> (tensor, index)
    inner = {order}  # values computed from the order
    inverses: set[str] = set()  # those computed from its inverse (a ScatterElements')
    for node in nodes:
        read = inner & set(node.input)
        if not read:
            continue
        if node.op_type == "Gather" and read == {node.input[1]}:  # rows in the order, or back
            reordered[node.output[0]] = (node.input[0], node.input[1])
            continue
        if node.op_type not in _ORDER_OPS:
            return None, set()
        inner.update(node.output)
        if node.op_type == "ScatterElements" or inverses & read:
            inverses.update(node.output)
    undone = {index in inverses for _, index in reordered.values()}
    if inner & outputs or undone != {False, True}:  # sorted and put back, both
        return None, set()
    return {out: tensor for out, (tensor, _) in reordered.items()}, inner


__all__ = ["SortedRows", "sorted_rows"]
