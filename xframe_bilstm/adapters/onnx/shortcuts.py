"""What a capturable interpreter module runs differently from the graph's nodes one by one.

Exporters write some torch code as several nodes whose capture no Keras layer reads: a
recurrent node's ``Y`` put back in another layout (:mod:`.direction_axis`), an activation
written out (:mod:`.activation_patterns`). :class:`Shortcuts` runs each as the torch code it
came from, so ``torch.export`` captures the module as that code; the outputs are the same,
and the values inside a shortcut are not computed. torch is reached through the module
that runs them, so importing this module imports no framework.
"""

from __future__ import annotations

from typing import Any

from .activation_patterns import activation_patterns
from .direction_axis import folded_readers
from .nodes import describe_node


class Shortcuts:
    """The shortcuts of one graph; none where ``enabled`` is false."""

    def __init__(self, graph: Any, constants: dict[str, Any], enabled: bool) -> None:
        # Y's form per recurrent node; what each reader of it takes (None: all of it).
        self.forms, self.passed = folded_readers(graph, constants) if enabled else ({}, {})
        self.activations, self.inner = (
            activation_patterns(graph, constants) if enabled else ({}, set())
        )

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
            with torch.fx.traceback.annotate({"source": describe_node(node)}):
                values[out] = getattr(torch.nn.functional, activation)(values[reads])
            return True
        return False
