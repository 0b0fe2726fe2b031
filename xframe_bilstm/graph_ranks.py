"""The rank of every tensor of a model graph (batch axis included), from its records alone.

A file's configuration says how layers connect, not what shapes they read; where a layer's
meaning depends on its input's rank (a Keras ``Dot`` over axis 1 of vectors or of
sequences), the reader asks here, and so does the ONNX export, which writes ranks into its
operations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .graph import LayerRecord
from .reference.where import evaluate, expression
from .time_distributed import inner_graph


def tensor_ranks(layers: Iterable[LayerRecord]) -> dict[str, int]:
    """Each tensor's rank, for records in dependency order (a graph's ``layers``, or the
    first records of one).

    Example:
        >>> ids = LayerRecord("ids", "input", "InputLayer",
        ...                   options={"shape": (None,), "dtype": "int32"})
        >>> pool = LayerRecord("pool", "global_pool", "GlobalMaxPooling1D", ("ids",),
        ...                    {"op": "max", "keepdims": False})
        >>> tensor_ranks([ids, pool])
        {'ids': 2, 'pool': 2}
    """
    ranks: dict[str, int] = {}
    for record in layers:
        ranks.update(dict.fromkeys(record.outputs[1:], 2))  # final states (B, H)
        ranks[record.name] = _rank(record, ranks)
    return ranks


def _rank(record: LayerRecord, ranks: Mapping[str, int]) -> int:
    options, kind = record.options, record.kind
    if kind == "input":
        return 1 + len(options["shape"])
    rank = ranks[record.inputs[0]]
    if kind == "recurrent":
        return 3 if options["return_sequences"] else 2
    if kind in ("flatten", "valid_steps") or (kind == "global_pool" and not options["keepdims"]):
        return 2  # every axis but batch and channels pooled
    if kind == "reshape":
        return 1 + len(options["target_shape"])
    if kind == "broadcast":
        return 1 + len(options["shape"])
    if kind == "repeat_vector":
        return 3
    if kind == "embedding":
        return rank + 1
    if kind == "merged_rows" or (kind == "slice" and not options["keep_axis"]):
        return rank - 1
    if kind == "reduce" and not options["keepdims"]:
        return rank - len(options["axes"])
    if kind == "merge":
        return max(ranks[name] for name in record.inputs)
    if kind == "time_distributed":
        inner = options["layer"]
        return 1 + tensor_ranks(inner_graph(record, rank).layers)[inner.name]
    if kind == "where" and "otherwise" in options:
        return _where_rank(record, ranks)
    return rank


def _where_rank(record: LayerRecord, ranks: Mapping[str, int]) -> int:
    """A mask as numbers: its condition's rank (each source's with the axes inserted)."""

    def rank(term: Mapping[str, Any], index: int) -> int:
        return ranks[record.inputs[index]] + len(term["axes"])

    return int(evaluate(expression(record.options), rank, lambda op, a, b: max(a, b)))


__all__ = ["tensor_ranks"]
