"""The values of an ONNX graph that follow from shapes alone, computed as numpy arrays.

Exporters compute sizes inside the graph: torch.onnx's ``x.reshape(b, t, -1)`` is
``Shape``, ``Gather``, ``Unsqueeze`` and ``Concat`` feeding a ``Reshape``. Run with torch
ops, those sizes are tensors, which ``torch.export`` cannot read back as numbers; computed
here from the shapes of the tensors at hand, they are numbers, so the interpreter's module
captures as the torch code it stands for would (``x.reshape(2, 7, 16)`` at each capture's
sizes). A value is static when it is a shape, a small integer constant, or computed by a
shape operator (:data:`STATIC_OPS`, or a ``ConstantOfShape`` of integers) from static
values alone; each such node runs on onnx's own reference implementation of the operator.
Imports no framework.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._imports import require

# Operators that compute sizes: run on static inputs, they give static values.
STATIC_OPS = frozenset(
    {
        "Abs", "Add", "And", "Cast", "Ceil", "Concat", "Div", "Equal", "Expand", "Floor",
        "Gather", "Greater", "Identity", "Less", "Max", "Min", "Mod", "Mul", "Neg", "Not",
        "Or", "Range", "ReduceProd", "Reshape", "Slice", "Squeeze", "Sub", "Tile",
        "Transpose", "Unsqueeze", "Where",
    }
)  # fmt: skip
# The inputs each operator reads as numbers (sizes, axes, positions), by index: a static
# value stays numpy there; anywhere else it becomes a tensor.
NUMBER_SLOTS: dict[str, frozenset[int]] = {
    "Reshape": frozenset({1}),
    "Clip": frozenset({1, 2}),
    "Slice": frozenset({1, 2, 3, 4}),
    "Expand": frozenset({1}),
    "Tile": frozenset({1}),
    "ConstantOfShape": frozenset({0}),
    "Unsqueeze": frozenset({1}),
    "Squeeze": frozenset({1}),
    "Split": frozenset({1}),
    "Pad": frozenset({1, 2, 3}),
    "Resize": frozenset({1, 2, 3}),
    "Upsample": frozenset({1}),
    "Range": frozenset({0, 1, 2}),
    "Gather": frozenset({1}),
    "ReduceMean": frozenset({1}),
    "ReduceSum": frozenset({1}),
    "ReduceMax": frozenset({1}),
    "ReduceMin": frozenset({1}),
    "ReduceProd": frozenset({1}),
}
_SMALL = 1  # integer constants of rank 0 or 1 are sizes, axes or positions, not data


def is_static(value: Any) -> bool:
    return isinstance(value, np.ndarray)


def static_constant(value: np.ndarray) -> bool:
    """Whether a graph constant is a size, an axis or a position (a small integer one)."""
    return value.ndim <= _SMALL and (
        np.issubdtype(value.dtype, np.integer) or value.dtype == np.bool_
    )


def static_constants(graph: Any, constants: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The graph's constants that stay numpy: the small integer ones, and those an
    operator reads as numbers (``Resize``'s float scales)."""
    numbers = {
        name
        for node in graph.node
        for index, name in enumerate(node.input)
        if index in NUMBER_SLOTS.get(node.op_type, ())
    }
    return {
        name: value
        for name, value in constants.items()
        if static_constant(value) or name in numbers
    }


class StaticValues:
    """Runs the shape operators of one graph on numpy, each node on onnx's reference
    implementation (built once per node)."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self._evaluators: dict[int, Any] = {}

    def runs(self, node: Any, args: list[Any]) -> bool:
        """Whether ``node`` computes a static value from ``args``: a shape or a size of any
        tensor, or a shape operator of static values."""
        if node.op_type in ("Shape", "Size"):
            return True
        if node.op_type == "ConstantOfShape":  # of integers: sizes; of floats: data (states)
            return all(map(is_static, args)) and _integer_fill(node)
        present = [a for a in args if a is not None]
        return node.op_type in STATIC_OPS and bool(present) and all(map(is_static, present))

    def run(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> tuple[Any, ...]:
        if node.op_type == "Shape":
            dims = np.array(tuple(args[0].shape), dtype=np.int64)
            start, end = attributes.get("start", 0), attributes.get("end", len(dims))
            return (dims[start:end],)
        if node.op_type == "Size":
            return (np.array(int(np.prod(tuple(args[0].shape))), dtype=np.int64),)
        evaluator = self._evaluators.get(id(node))
        if evaluator is None:  # a function of the one node, at the graph's opset
            onnx = require("onnx")
            reference = require("onnx.reference")
            inputs = [name for name in node.input if name]
            opset = onnx.helper.make_opsetid("", self.opset)
            function = onnx.helper.make_function(
                "static", "node", inputs, list(node.output), [node], [opset]
            )
            evaluator = reference.ReferenceEvaluator(function)
            self._evaluators[id(node)] = evaluator
        feeds = {name: arg for name, arg in zip(node.input, args) if name}
        return tuple(np.asarray(v) for v in evaluator.run(None, feeds, attributes={}))


# Operators that move or cast values: run on constants alone, they give constants.
FOLDED_OPS = frozenset(
    {"Cast", "Concat", "Gather", "Identity", "Reshape", "Slice", "Split", "Squeeze",
     "Transpose", "Unsqueeze"}
)  # fmt: skip


def folded_constants(
    graph: Any, constants: dict[str, Any], opset: int, ops: frozenset[str] | None = FOLDED_OPS
) -> dict[str, Any]:
    """``constants`` with the values of the nodes of ``ops`` (None: any operator of the
    default domain) that read constants alone, each computed once on onnx's reference
    implementation: the dynamo exporter writes a recurrent node's gate reordering of its
    weights as ``Slice`` nodes and a ``Concat`` of the initializer, which then reads as the
    constant weight it is. A node the reference implementation refuses stays computed."""
    from .nodes import node_attributes

    values = dict(constants)
    static = StaticValues(opset)
    nodes = list(graph.node)  # held: the evaluators are kept by each node's id
    for node in nodes:
        read = [name for name in node.input if name]
        known = node.domain in ("", "ai.onnx") if ops is None else node.op_type in ops
        if not known or not read or not all(n in values for n in read):
            continue
        args = [values[name] if name else None for name in node.input]
        try:
            values.update(zip(node.output, static.run(node, node_attributes(node), args)))
        except Exception:  # the reference implementation's refusal: left computed
            continue
    return values


def _integer_fill(node: Any) -> bool:
    """Whether a ``ConstantOfShape`` fills with integers (it fills with float 0 unless told)."""
    onnx = require("onnx")
    value = next((a.t for a in node.attribute if a.name == "value"), None)
    return value is not None and np.issubdtype(
        onnx.helper.tensor_dtype_to_np_dtype(value.data_type), np.integer
    )


def as_tensors(op: str, args: list[Any], tensor: Any) -> list[Any]:
    """``args`` for a node run with torch ops: each static value made a tensor by
    ``tensor``, except in the slots the operator reads as numbers."""
    numbers = NUMBER_SLOTS.get(op, frozenset())
    return [
        tensor(arg) if is_static(arg) and index not in numbers else arg
        for index, arg in enumerate(args)
    ]
