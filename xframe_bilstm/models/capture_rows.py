"""Rows sorted by their lengths before packing, and put back after, in a captured ``forward``.

Code written before ``pack_padded_sequence`` took ``enforce_sorted=False`` sorts the batch
itself::

    lengths, order = lengths.sort(0, descending=True)
    packed = pack_padded_sequence(x[order], lengths, batch_first=True)
    ...
    output = output[order.argsort()]

Every record computes each row on its own (an operation mixing rows is refused), so
sorting the rows and putting them back computes nothing: the sorts, the orders and the
indexing by them are read as nothing, and a tensor in sorted order as the same tensor in
the input's order. That holds only where sorted rows meet sorted rows alone and every
result is put back, so each tensor's order is followed and the rest refused by name.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from .capture_tensors import op_name

_SORTS = ("aten.sort", "aten.argsort")
_INDEXING = ("aten.index", "aten.index_select")
_MOVES = ("to", "_to_copy", "clone", "contiguous", "detach")


@dataclass
class RowOrders:
    """What the sorting of rows in a capture is read as.

    ``ignored``: the sorts and the orders they give (no tensor of a layer); ``aliases``:
    each indexing by an order -> the tensor it indexes; ``lengths``: the sorted lengths;
    ``found``: (why, node) of what cannot be read so.
    """

    ignored: set[Any] = field(default_factory=set)
    aliases: dict[Any, Any] = field(default_factory=dict)
    lengths: set[Any] = field(default_factory=set)
    found: list[tuple[str, Any]] = field(default_factory=list)


def row_orders(graph: Any, inputs: list[Any], lengths: list[Any], batch: int) -> RowOrders:
    """Follow the rows' order through ``graph`` from ``forward``'s data ``inputs`` and its
    rows' ``lengths`` (none, or the one input of them; ``batch``: the capture's batch size,
    telling the batch axis of an indexing)."""
    rows = RowOrders()
    derived = set(lengths)  # the lengths, moved or sorted: their sort gives an order
    orders: dict[Any, bool] = {}  # order -> whether it sorts (True) or puts back (False)
    tags = dict.fromkeys([*inputs, *lengths], False)  # tensor -> whether its rows are sorted
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        op = op_name(node)
        source: Any = node.args[0] if node.args else None
        if op in _SORTS and (source in derived or source in orders):
            rows.ignored.add(node)
            if op == "aten.argsort":  # the order itself: sorting lengths, or putting back
                orders[node] = source in derived
            continue
        if source in orders and op.split(".")[-1] in _MOVES:  # order.to(x.device)
            rows.ignored.add(node)
            orders[node] = orders[source]
            continue
        if node.target is operator.getitem and source in rows.ignored:  # sort(...)[k]
            sorted_lengths = op_name(source) == "aten.sort" and node.args[1] == 0
            if sorted_lengths and source.args[0] in derived:
                rows.lengths.add(node)
                derived.add(node)
                tags[node] = True
            elif not sorted_lengths:
                rows.ignored.add(node)
                orders[node] = source.args[0] in derived
            else:
                rows.ignored.add(node)
            continue
        order = _order_of(node, orders, batch)
        if order is not None:
            rows.aliases[node] = source
            if source in derived:  # lengths[order]: the sorted lengths
                rows.lengths.add(node)
                derived.add(node)
            if tags.get(source, False) == orders[order]:
                rows.found.append(("indexes rows already in that order by the lengths", node))
            tags[node] = orders[order]
            continue
        if any(arg in orders for arg in node.all_input_nodes):
            rows.found.append((f"applies {op} to an order of the rows", node))
            continue
        if source in derived and op.split(".")[-1] in _MOVES:
            derived.add(node)
        seen = {tags[arg] for arg in node.all_input_nodes if arg in tags}
        if len(seen) > 1:
            rows.found.append(
                (f"applies {op} to rows sorted by their lengths and rows in input order", node)
            )
        if seen:
            tags[node] = True in seen
    for result in _results(graph):
        if tags.get(result):
            rows.found.append(
                (
                    "returns rows in the order sorting by the lengths gave them; put them back "
                    "(output[order.argsort()])",
                    result,
                )
            )
    return rows


def _order_of(node: Any, orders: dict[Any, bool], batch: int) -> Any:
    """The order ``node`` indexes its tensor's batch axis by, or None."""
    op = op_name(node)
    if op not in _INDEXING or len(node.args) < 2:
        return None
    value = getattr(node.args[0], "meta", {}).get("val")
    shape = tuple(getattr(value, "shape", ()))
    if op == "aten.index_select" and len(node.args) == 3:
        axis, order = int(node.args[1]), node.args[2]
    elif op == "aten.index" and isinstance(node.args[1], (list, tuple)):
        given = [(axis, arg) for axis, arg in enumerate(node.args[1]) if arg is not None]
        if len(given) != 1:
            return None
        axis, order = given[0]
    else:
        return None
    if order not in orders or axis > 1 or axis >= len(shape) or shape[axis] != batch:
        return None
    return order


def _results(graph: Any) -> list[Any]:
    (results,) = [node.args[0] for node in graph.nodes if node.op == "output"]
    return list(results) if isinstance(results, (tuple, list)) else [results]


__all__ = ["RowOrders", "row_orders"]
