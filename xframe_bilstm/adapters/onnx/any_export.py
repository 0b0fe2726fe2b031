"""Any graph to ONNX: the one export entry that every ONNX column and :func:`to_onnx` use.

A graph that :func:`~xframe_bilstm.stack_graph.stack_of` reads as a recurrent stack exports
as :func:`~xframe_bilstm.adapters.onnx.export.canonical_to_onnx` exports the stack (native
recurrent nodes, with initial states and lengths as graph inputs when asked for), so a
layer's column runs exactly the graph its users get from ``to_onnx(layer)``; any other graph
exports as :func:`~xframe_bilstm.adapters.onnx.graph_export.graph_to_onnx` (standard
operators, the model's inputs and outputs). onnx is imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import UnsupportedFeatureError
from ...graph import ModelGraph
from ...stack_graph import stack_of
from .export import canonical_to_onnx
from .graph_export import GRAPH_OPSET, graph_export_refusal, graph_to_onnx
from .vocabulary import activation_refusal


@dataclass(frozen=True)
class Export:
    """An exported ``onnx.ModelProto`` (not yet checked) and the exporter that wrote it."""

    model: Any
    exporter: str  # "canonical_to_onnx" or "graph_to_onnx"


def export_refusal(graph: ModelGraph, opset: int = GRAPH_OPSET) -> str | None:
    """Why :func:`export_graph` cannot export ``graph``, or None.

    A stack's refusal is an activation ONNX recurrent nodes lack (its opset floors are
    checked at export); another graph's is :func:`graph_export_refusal` at ``opset``.
    """
    stack = stack_of(graph)
    if stack is None:
        return graph_export_refusal(graph, opset)
    reasons = (activation_refusal(layer) for layer in stack.layers)
    return next((reason for reason in reasons if reason), None)


def export_graph(
    graph: ModelGraph,
    *,
    opset: int,
    dtype: str = "float32",
    with_initial_states: bool = False,
    with_lengths: bool = False,
) -> Export:
    """``graph`` as an ONNX model: a stack's native recurrent graph, else standard operators.

    Args:
        graph: any graph (:func:`~xframe_bilstm.stack_graph.as_graph` of a reading).
        opset: default-domain opset.
        dtype: ``"float32"`` or ``"float16"``.
        with_initial_states: add every recurrent layer's initial states as graph inputs,
            after the model's inputs.
        with_lengths: add an int32 ``lengths`` input (B,), last.

    Raises:
        UnsupportedFeatureError: what the exporter refuses; for a graph that is not a stack,
            ``with_initial_states`` and ``with_lengths`` (its recurrent layers start from
            zero states and its masks come from its inputs' values).
    """
    stack = stack_of(graph)
    if stack is not None:
        model = canonical_to_onnx(
            stack,
            opset=opset,
            with_initial_states=with_initial_states,
            with_lengths=with_lengths,
            dtype=dtype,
        )
        return Export(model, "canonical_to_onnx")
    options = (("with_initial_states", with_initial_states), ("with_lengths", with_lengths))
    asked = [f"{name}=True" for name, value in options if value]
    if asked:
        raise UnsupportedFeatureError(
            f"{' and '.join(asked)}: {graph.source} is a whole model, whose recurrent layers "
            "start from zero states and whose masks come from its inputs' values "
            "(Embedding(mask_zero=True), Masking); export it without"
        )
    return Export(graph_to_onnx(graph, opset=opset, dtype=dtype), "graph_to_onnx")
