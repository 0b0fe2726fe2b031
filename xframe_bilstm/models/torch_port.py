"""One torch entry for any graph: the module that runs it, and the arguments it takes.

A graph :func:`~xframe_bilstm.stack_graph.stack_graph` drew from a recurrent stack is ported
as the stack's own :class:`~xframe_bilstm.adapters.torch.KerasRecurrent` (what
``keras_to_torch(layer)`` returns, so the torch column runs what users get); any other
graph as :func:`~xframe_bilstm.models.port.port_graph` builds it. Every module takes the
graph's inputs in order, then, where the graph's input takes ``lengths`` (a stack's), the
initial states in Keras order and the lengths, as the Keras layer takes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..graph import ModelGraph
from ..stack_graph import stack_of, takes_lengths


def port_of(graph: ModelGraph) -> Any:
    """The torch module computing ``graph`` (not verified: the caller compares it)."""
    stack = stack_of(graph)
    if stack is not None:
        from ..adapters.torch import canonical_to_torch

        return canonical_to_torch(stack)
    from .port import port_graph

    return port_graph(graph, verify=False)


def module_arguments(
    graph: ModelGraph, inputs: Sequence[Any], states: Any, lengths: Any
) -> list[Any]:
    """What a module of ``graph`` is called with: its inputs, then the initial states (or
    None) and lengths (or None) where the graph takes them."""
    return [*inputs, states, lengths] if takes_lengths(graph) else list(inputs)


__all__ = ["module_arguments", "port_of"]
