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


_TO_THE_END = 2**62  # aten.slice's stop "to the end", the largest int64 it takes
# Operations whose numbers are positions or amounts along an axis: where they differ
# between the captures, they follow the input's length, which no record recomputes.
_POSITIONAL = frozenset(
    {
        "aten.slice",
        "aten.select",
        "aten.narrow",
        "aten.constant_pad_nd",
        "aten.pad",
        "aten.split",
        "aten.split_with_sizes",
        "aten.roll",
    }
)
# Arithmetic with numbers: a number that differs between the captures was computed from the
# input's sizes (``h.sum(1) / h.shape[1]``), and the port would keep one capture's.
_ARITHMETIC = frozenset(
    {
        "aten.add", "aten.sub", "aten.rsub", "aten.mul", "aten.div", "aten.true_divide",
        "aten.floor_divide", "aten.remainder", "aten.fmod", "aten.pow", "aten.clamp",
        "aten.clamp_min", "aten.clamp_max",
    }
)  # fmt: skip


def check_fixed_positions(node: Any, other: Any, tensors: Tensors) -> None:
    """Refuse ``node`` where its positions, or the numbers it computes with, differ in the
    second capture (``other``: the node there, or None), as ``h[:, : h.size(1) // 2]`` and
    ``h.sum(1) / h.shape[1]`` make them: read from one capture, the port would keep them at
    every length. A slice's
    or a selection's positions that are the axis's length less the same number in both
    captures (``h[:, : h.size(1) - 2]``) are that number counted from the end, and are
    rewritten so (``h[:, :-2]``).

    Raises:
        Unsupported: naming the numbers at both lengths.
    """
    if other is None or op_name(node) not in _POSITIONAL | _ARITHMETIC:
        return
    here, there = _numbers(node.args), _numbers(other.args)
    if here == there or _counted_from_the_end(node, other, tensors):
        return
    if op_name(node) in _ARITHMETIC:
        raise Unsupported(
            f"applies {op_name(node)} with a number computed from the input's sizes "
            f"({', '.join(map(str, here))} in one capture, {', '.join(map(str, there))} in "
            "the other), which its port would keep at every length"
        )
    raise Unsupported(
        f"applies {op_name(node)} at positions that follow the input's length "
        f"({', '.join(map(str, here))} in one capture, {', '.join(map(str, there))} in "
        "the other), which its port would keep at every length; give every size "
        "(input_shape=...) to port it at those sizes"
    )


def _counted_from_the_end(node: Any, other: Any, tensors: Tensors) -> bool:
    """Rewrite ``node``'s start and stop (a slice) or index (a selection) as counted from
    the end where each that differs is the axis's length less one number in both captures;
    False, nothing rewritten, where one is not."""
    if op_name(node) not in ("aten.slice", "aten.select") or len(node.args) < 3:
        return False
    first, second = tensors.shapes.get(str(getattr(node.args[0], "name", "")), ((), None))
    if second is None or len(node.args) != len(other.args):
        return False
    dim = int(node.args[1]) % len(first)
    rewritten = {}
    for index in (2, 3) if op_name(node) == "aten.slice" else (2,):
        here, there = node.args[index : index + 1], other.args[index : index + 1]
        if here == there:
            continue
        if not all(isinstance(p, int) and p >= 0 for p in (*here, *there)):
            return False
        left = first[dim] - here[0]
        least = 0 if index == 3 else 1  # only a stop may be the length itself
        if left != second[dim] - there[0] or left < least:
            return False
        rewritten[index] = -left if left else _TO_THE_END  # a stop at the length: the end
    for index, value in rewritten.items():
        node.update_arg(index, value)
    return True


def _numbers(args: Any) -> list[Any]:
    """The numbers among ``args`` (nested lists flattened), tensors left out."""
    numbers: list[Any] = []
    for arg in args:
        if isinstance(arg, (list, tuple)):
            numbers += _numbers(arg)
        elif not hasattr(arg, "op"):
            numbers.append(arg)
    return numbers


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


def varying_constants(first: Any, second: Any) -> dict[str, str]:
    """The constants a forward makes whose values differ between the two captures (None:
    no second), each with its values at both: a number computed from the input's length
    (an exported graph's ``T / (T - 1)``, the indices of a reflect padding), which the port
    would keep at every length."""
    if second is None:
        return {}
    here, there = held_tensors(first), held_tensors(second)
    made = set(first.graph_signature.inputs_to_lifted_tensor_constants)
    varying = {}
    for name in made & set(there):
        a, b = (here[name].detach().cpu(), there[name].detach().cpu())
        if a.shape != b.shape or not bool((a == b).all()):
            varying[name] = f"{_shown(a)} in one capture, {_shown(b)} in the other"
    return varying


def _shown(tensor: Any) -> str:
    values = tensor.reshape(-1).tolist()
    return ", ".join(f"{v:g}" for v in values[:4]) + (", ..." if len(values) > 4 else "")


__all__ = [
    "RESHAPES",
    "Names",
    "Shape",
    "Tensors",
    "Unsupported",
    "axis_of",
    "check_fixed_positions",
    "computed_on_held",
    "fold_held",
    "held_tensors",
    "is_tuple_getitem",
    "op_name",
    "varying_constants",
]
