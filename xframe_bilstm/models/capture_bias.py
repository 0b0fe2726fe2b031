"""A held vector added to a Dense without a bias, read as the Dense's bias.

``x @ self.W + self.b`` written in ``forward``, ``F.linear(x, W)`` then ``+ b``, and
torch.onnx's export of an ``nn.Linear`` on a sequence (``MatMul``, then ``Add`` of the
bias) are captured as a ``dense`` record and a ``weight_op`` adding a held tensor. Where
that tensor is one value per unit and the add is all that reads the Dense, the two are one
Dense with that bias: a Keras port holds a plain ``Dense`` rather than a custom
``WeightOp`` layer after it, and computes the same sum.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence

from ..graph import LayerRecord


def dense_biases(records: Sequence[LayerRecord], outputs: Sequence[str]) -> list[LayerRecord]:
    """``records`` with each bias added after a Dense folded into it, under the add's name.

    Example:
        >>> import numpy as np
        >>> dense = LayerRecord("matmul", "dense", "matmul", ("x",),
        ...     {"activation": "linear", "time_distributed": False}, {"kernel": np.ones((2, 3))})
        >>> add = LayerRecord("add", "weight_op", "add", ("matmul",),
        ...     {"op": "add", "reverse": True, "shape": (3,)}, {"value": np.arange(3.0)})
        >>> [(r.name, r.kind, sorted(r.weights)) for r in dense_biases([dense, add], ["add"])]
        [('add', 'dense', ['bias', 'kernel'])]
    """
    readers = Counter(name for record in records for name in record.inputs)
    readers.update(outputs)
    by_name = {record.name: record for record in records}
    folded: dict[str, LayerRecord] = {}  # a Dense's name -> the Dense with its bias
    adds: dict[str, LayerRecord] = {}  # the folded Dense's name -> the add it was
    for record in records:
        dense = by_name.get(record.inputs[0]) if len(record.inputs) == 1 else None
        if dense is not None and readers[dense.name] == 1 and _adds_a_bias(record, dense):
            bias = record.weights["value"].reshape(-1)
            folded[dense.name] = dataclasses.replace(
                dense, name=record.name, weights={**dense.weights, "bias": bias}
            )
            adds[record.name] = record
    added = {record.name for record in folded.values()}
    kept = [
        folded.get(record.name, record)
        for record in records
        if record.name not in added or record.kind == "dense"
    ]
    return [_sharing_folded(record, folded, adds) for record in kept]


def _sharing_folded(
    record: LayerRecord, folded: dict[str, LayerRecord], adds: dict[str, LayerRecord]
) -> LayerRecord:
    """``record`` sharing the folded Dense its Dense shared, where its bias is that one's
    too (a shared ``Linear`` exported as ``MatMul`` and ``Add`` on each call); else sharing
    nothing (the same arrays, or a layer with a bias and one without)."""
    if not record.shares:
        return record
    owner = folded.get(record.shares)
    add = adds.get(record.name)
    if owner is not None and add is not None and add.shares == owner.name:
        return dataclasses.replace(record, shares=owner.name)
    if owner is None and add is None:
        return record
    return dataclasses.replace(record, shares="")


def _adds_a_bias(record: LayerRecord, dense: LayerRecord) -> bool:
    """Whether ``record`` adds one held value per unit to ``dense``, which has no bias."""
    if record.kind != "weight_op" or record.options.get("op") != "add":
        return False
    if dense.kind != "dense" or "bias" in dense.weights:
        return False
    if dense.options.get("activation", "linear") != "linear":
        return False
    value = record.weights["value"]
    units = dense.weights["kernel"].shape[-1]
    return value.ndim >= 1 and value.shape[-1] == units and value.size == units
