"""What a capturable interpreter module runs differently from the graph's nodes one by one.

Exporters write some torch code as several nodes whose capture no Keras layer reads: a
recurrent node's ``Y`` put back in another layout (:mod:`.direction_axis`), an activation
written out (:mod:`.activation_patterns`), zero initial states built from the input's
batch size (``ConstantOfShape``, ``Expand``, a ``Slice`` per layer), rows sorted by their
lengths and put back (:mod:`.sorted_rows`), arithmetic or a comparison with a constant,
or a ``Where`` choosing one (``ids == 0``, ``lengths - 1``, ``torch.where(mask, x,
-inf)``: the constant a number). :class:`Shortcuts` runs each as the torch code it came
from (a recurrent module given no initial state starts from zeros), so ``torch.export``
captures the module as that code; the outputs are the same, and the values inside a
shortcut are not computed. torch is reached through the
module that runs them, so importing this module imports no framework.
"""

from __future__ import annotations

from typing import Any

from ..._imports import require
from ...errors import UnsupportedFeatureError
from .activation_patterns import activation_patterns
from .direction_axis import folded_readers
from .nodes import describe_node, naming_node, node_attributes
from .sorted_rows import SortedRows, sorted_rows
from .vocabulary import CELL_BY_OP

_STATE_SLOTS = (5, 6)  # initial_h, initial_c
# Operators whose output is all zeros when their (first) input is, whatever else they read.
_KEEPS_ZEROS = {"Expand", "Slice", "Reshape", "Unsqueeze", "Squeeze", "Gather", "Identity"}
_KEEPS_ZEROS |= {"Cast", "Transpose", "Tile"}
# Binary operators run with a number: torch's function of (tensor, number) where the
# number comes second, and where it comes first (None: the operator runs on tensors).
_WITH_NUMBER = {
    "Equal": ("eq", "eq"), "Less": ("lt", "gt"), "Greater": ("gt", "lt"),
    "Add": ("add", "add"), "Sub": ("sub", "rsub"), "Mul": ("mul", "mul"), "Div": ("div", None),
}  # fmt: skip


class Shortcuts:
    """The shortcuts of one graph; none where ``enabled`` is false."""

    def __init__(self, graph: Any, constants: dict[str, Any], enabled: bool) -> None:
        # Y's form per recurrent node; what each reader of it takes (None: all of it).
        self.forms, self.passed = folded_readers(graph, constants) if enabled else ({}, {})
        self.activations, self.inner = (
            activation_patterns(graph, constants) if enabled else ({}, set())
        )
        self.zero_states = _zero_states(graph, constants) if enabled else set()
        self.sorted = sorted_rows(graph) if enabled else SortedRows()
        self.numbers = {  # one-element constants: numbers where torch code writes them
            name: (value.reshape(-1)[0].item(), value.ndim)
            for name, value in (constants.items() if enabled else ())
            if value.size == 1
        }

    def recurrent_args(self, node: Any, args: list[Any]) -> list[Any]:
        """A recurrent node's inputs, its initial states None where they are all zeros."""
        return [
            None if slot in _STATE_SLOTS and name in self.zero_states else arg
            for slot, (name, arg) in enumerate(zip(node.input, args))
        ]

    def run(self, torch: Any, node: Any, values: dict[str, Any]) -> bool:
        """Whether ``node`` is a shortcut's, having set its output in ``values`` (or, inside
        an activation written out, nothing)."""
        out = node.output[0]
        if out in self.inner or out in self.sorted.inner:
            return True
        if out in self.sorted.reordered:  # rows as they are, not sorted nor put back
            values[out] = values[self.sorted.reordered[out]]
            return True
        if out in self.sorted.lengths:  # the lengths as given, not sorted
            lengths = values[self.sorted.lengths[out]]
            k = values[node.input[1]] if len(node.input) > 1 else None
            if lengths.dim() != 1 or k is None or int(k.reshape(-1)[0]) != lengths.shape[0]:
                raise UnsupportedFeatureError(
                    f"{describe_node(node)} sorts the rows by their lengths, but not all of them"
                )
            values[out] = lengths
            return True
        if out in self.passed:  # Y already as this node reads it, or one direction of it
            y, pick = values[node.input[0]], self.passed[out]
            values[out] = y if pick is None else y.select(2, pick)
            return True
        if out in self.activations:
            activation, reads = self.activations[out]
            with naming_node(torch, node):
                values[out] = getattr(torch.nn.functional, activation)(values[reads])
            return True
        if node.op_type in _WITH_NUMBER or node.op_type == "Where":
            return self._with_number(torch, node, values)
        return False

    def _with_number(self, torch: Any, node: Any, values: dict[str, Any]) -> bool:
        """Arithmetic or a comparison of a tensor and a one-element constant, or a
        ``Where`` choosing a constant where its condition holds or does not, run with the
        constant as a number, as torch code writes ``ids == 0``, ``lengths - 1`` and
        ``torch.where(mask, x, float("-inf"))`` (an integer division stays as ONNX's)."""
        held = [self.numbers.get(name) for name in node.input]
        numbers = [None if h is None else h[0] for h in held]
        given = [values.get(name) for name in node.input]
        tensors: list[Any] = [g for g, n in zip(given, numbers) if n is None]
        if len(tensors) != len(given) - 1 or not all(map(torch.is_tensor, tensors)):
            return False  # no constant, or only constants, or sizes (:mod:`.static_values`)
        rank = next(h[1] for h in held if h is not None)
        if rank > max(tensor.dim() for tensor in tensors):
            return False  # the constant would add axes to the result: a tensor it stays
        if node.op_type == "Where":
            if numbers[0] is not None:
                return False
            chosen = [g if n is None else n for g, n in zip(given[1:], numbers[1:])]
            with naming_node(torch, node):
                values[node.output[0]] = torch.where(tensors[0].bool(), *chosen)
            return True
        function = _WITH_NUMBER[node.op_type][numbers[1] is None]
        tensor, number = tensors[0], next(n for n in numbers if n is not None)
        if function is None or (node.op_type == "Div" and not tensor.is_floating_point()):
            return False
        with naming_node(torch, node):
            values[node.output[0]] = getattr(torch, function)(tensor, number)
        return True


def _zero_states(graph: Any, constants: dict[str, Any]) -> set[str]:
    """The initial states of recurrent nodes that are all zeros whatever the input."""
    zeros = {name for name, value in constants.items() if value.size and not value.any()}
    for node in graph.node:
        first = node.input[0] if node.input else ""
        if node.op_type == "ConstantOfShape":
            value = node_attributes(node).get("value")  # a TensorProto; absent: 0.0
            filled = value is None or not require("onnx").numpy_helper.to_array(value).any()
        elif node.op_type == "Concat":
            filled = all(name in zeros for name in node.input if name)
        else:
            filled = node.op_type in _KEEPS_ZEROS and first in zeros
        if filled:
            zeros.update(node.output)
    return {
        name
        for node in graph.node
        if node.op_type in CELL_BY_OP
        for slot, name in enumerate(node.input)
        if slot in _STATE_SLOTS and name in zeros
    }
