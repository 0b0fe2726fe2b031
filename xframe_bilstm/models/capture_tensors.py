"""The tensors of a ``forward`` captured by ``torch.export``, as the readers of its
operations see them: the record computing each node, its shapes in the two captures, the
tensors the module holds, the records' names, and the refusal of an operation no record
computes."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .._imports import require
from ..graph import LayerRecord

Shape = tuple[int, ...]
# Operators that only reshape: read as a ``reshape`` record, or as nothing.
RESHAPES = frozenset(
    {
        "aten.view",
        "aten.reshape",
        "aten._unsafe_view",
        "aten.flatten",
        "aten.squeeze",
        "aten.unsqueeze",
    }
)


class Unsupported(Exception):
    """An operation with no layer record; the message says what it does."""


@dataclass
class Tensors:
    """The captured tensors: the record computing each node, and its shapes in both captures.

    ``shapes`` maps a node's name to (shape in the first capture, shape in the second
    or None where there is no second capture); ``held`` maps the name of a node that is a
    tensor the module holds (a parameter, buffer or constant) to its value.
    """

    names: dict[Any, str] = field(default_factory=dict)
    shapes: dict[str, tuple[Shape, Shape | None]] = field(default_factory=dict)
    batches: tuple[int, int] = (3, 2)
    held: dict[str, Any] = field(default_factory=dict)
    swapped: set[str] = field(default_factory=set)
    merged: set[str] = field(default_factory=set)
    positions: dict[str, Any] = field(default_factory=dict)  # torch.arange(T) -> its steps'

    def holds(self, node: Any) -> bool:
        """Whether ``node`` is a tensor the module holds."""
        return str(getattr(node, "name", "")) in self.held

    def is_swapped(self, node: Any) -> bool:
        """Whether ``node`` is a time-major tensor, (time, batch, ...)."""
        return str(getattr(node, "name", "")) in self.swapped

    def is_merged(self, node: Any) -> bool:
        """Whether ``node`` has its batch and time axes merged, (batch * time, ...)."""
        return str(getattr(node, "name", "")) in self.merged

    def value(self, node: Any) -> np.ndarray | None:
        """The value of a tensor the module holds, as a numpy copy; None for any other."""
        tensor = self.held.get(str(getattr(node, "name", "")))
        return None if tensor is None else tensor.detach().cpu().numpy().copy()

    def name(self, node: Any) -> str:
        if node not in self.names:
            raise Unsupported(
                f"reads {getattr(node, 'name', node)!r}, which is not a tensor of a layer"
            )
        return self.names[node]

    def rank(self, node: Any) -> int:
        return len(self.shapes[node.name][0])

    def free_shape(self, node: Any) -> tuple[int, ...]:
        """The node's shape without the batch axis, ``-1`` for free axes (at most one)."""
        first, second = self.shapes[node.name]
        if not first or first[0] != self.batches[0] or (second and second[0] != self.batches[1]):
            raise Unsupported("mixes the batch axis with others")
        target = tuple(
            -1 if second is not None and size != second[index + 1] else int(size)
            for index, size in enumerate(first[1:])
        )
        if target.count(-1) > 1:
            raise Unsupported(f"makes a shape with {target.count(-1)} axes of free length")
        return target


def fold_held(node: Any, tensors: Tensors, other: Any = None) -> bool:
    """Compute, and hold as the module's own, an operation on tensors the module holds
    only (``self.embedding.weight.t()`` for tied weights, ``self.log_scale.exp()``); False
    where it reads anything else, or where its shape or arguments differ in the second
    capture (``other``: the node there), as where it depends on the input's size."""
    torch = require("torch")
    given = node.all_input_nodes
    shapes = tensors.shapes.get(str(node.name))
    if (
        node.op != "call_function"
        or not given
        or not all(tensors.holds(n) for n in given)
        or not isinstance(node.meta.get("val"), torch.Tensor)
        or shapes is None
        or (shapes[1] is not None and shapes[0] != shapes[1])
        or (other is not None and str(other.args) != str(node.args))
    ):
        return False
    tensors.held[str(node.name)] = computed_on_held(node, tensors)
    return True


def computed_on_held(node: Any, tensors: Tensors) -> Any:
    """What ``node``, reading tensors the module holds only, computes from their values."""
    torch = require("torch")
    held = {str(n.name): tensors.held[str(n.name)] for n in node.all_input_nodes}

    def value(arg: Any) -> Any:
        return held.get(str(getattr(arg, "name", "")), arg) if hasattr(arg, "op") else arg

    args = [
        [value(a) for a in arg] if isinstance(arg, (list, tuple)) else value(arg)
        for arg in node.args
    ]
    with torch.no_grad():
        return node.target(*args, **node.kwargs)


def is_tuple_getitem(node: Any) -> bool:
    """Whether ``node`` takes one result of an operation returning several (``max.dim``)."""
    return node.op == "call_function" and node.target is operator.getitem


def op_name(node: Any) -> str:
    """The operation a captured node applies, as users read it: ``aten.mean`` for
    ``aten.mean.dim``."""
    target = node.target
    name = getattr(target, "name", None)
    text = name() if callable(name) else str(target)
    text = text.replace("::", ".")
    parts = text.split(".")
    return ".".join(parts[:2]) if text.startswith("aten.") else text


def axis_of(tensors: Tensors, node: Any, dim: int, what: str) -> int:
    rank = tensors.rank(node)
    axis = dim + rank if dim < 0 else dim
    if axis == 0:
        raise Unsupported(f"{what} over the batch axis (dim={dim})")
    return axis


class Names:
    """Record names, unique in the graph, readable as Keras layer names."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def __call__(self, hint: str) -> str:
        base = hint.replace(".", "_") or "layer"
        name, count = base, 1
        while name in self.taken:
            name, count = f"{base}_{count}", count + 1
        self.taken.add(name)
        return name

    def claim(self, made: list[LayerRecord]) -> list[LayerRecord]:
        """An operation's records, those made beside its own last one (``clamp``'s lower
        bound, ``stack``'s reshapes) renamed where their name is taken, and read so."""
        renamed: dict[str, str] = {}
        claimed = []
        for index, record in enumerate(made):
            inputs = tuple(renamed.get(name, name) for name in record.inputs)
            if index < len(made) - 1:  # the last one has the operation's own name
                renamed[record.name] = self(record.name)
            name = renamed.get(record.name, record.name)
            claimed.append(replace(record, name=name, inputs=inputs))
        return claimed


def held_tensors(exported: Any) -> dict[str, Any]:
    """The tensors the module holds (parameters, buffers, constants), by placeholder name."""
    signature = exported.graph_signature
    sources = {
        **signature.inputs_to_parameters,
        **signature.inputs_to_buffers,
        **signature.inputs_to_lifted_tensor_constants,
    }
    values = {**exported.state_dict, **exported.constants}
    return {name: values[target] for name, target in sources.items() if target in values}


__all__ = [
    "RESHAPES",
    "Names",
    "Shape",
    "Tensors",
    "Unsupported",
    "axis_of",
    "computed_on_held",
    "fold_held",
    "held_tensors",
    "is_tuple_getitem",
    "op_name",
]
