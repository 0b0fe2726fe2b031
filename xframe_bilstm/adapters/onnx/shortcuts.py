"""What a capturable interpreter module runs differently from the graph's nodes one by one.

Exporters write some torch code as several nodes whose capture no Keras layer reads: a
recurrent node's ``Y`` put back in another layout (:mod:`.direction_axis`), an activation
written out (:mod:`.activation_patterns`), zero initial states built from the input's
batch size (``ConstantOfShape``, ``Expand``, a ``Slice`` per layer). :class:`Shortcuts`
runs each as the torch code it came from (a recurrent module given no initial state starts
from zeros), so ``torch.export`` captures the module as that code; the outputs are the
same, and the values inside a shortcut are not computed. torch is reached through the
module that runs them, so importing this module imports no framework.
"""

from __future__ import annotations

from typing import Any

from ..._imports import require
from .activation_patterns import activation_patterns
from .direction_axis import folded_readers
from .nodes import naming_node, node_attributes
from .vocabulary import CELL_BY_OP

_STATE_SLOTS = (5, 6)  # initial_h, initial_c
# Operators whose output is all zeros when their (first) input is, whatever else they read.
_KEEPS_ZEROS = {"Expand", "Slice", "Reshape", "Unsqueeze", "Squeeze", "Gather", "Identity"}
_KEEPS_ZEROS |= {"Cast", "Transpose", "Tile"}


class Shortcuts:
    """The shortcuts of one graph; none where ``enabled`` is false."""

    def __init__(self, graph: Any, constants: dict[str, Any], enabled: bool) -> None:
        # Y's form per recurrent node; what each reader of it takes (None: all of it).
        self.forms, self.passed = folded_readers(graph, constants) if enabled else ({}, {})
        self.activations, self.inner = (
            activation_patterns(graph, constants) if enabled else ({}, set())
        )
        self.zero_states = _zero_states(graph, constants) if enabled else set()

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
        if out in self.inner:
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
        return False


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
