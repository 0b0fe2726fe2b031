"""ONNX graphs read as the torch module the interpreter runs them on.

The recurrent readers of :mod:`xframe_bilstm.adapters.onnx` read a graph of recurrent
nodes and glue (``graph_to_canonical``) and one with an embedding front and Dense heads
(``graph_to_model``). Any other graph the interpreter runs (a convolution front end, a
decoder of transposed convolutions, normalization: torch.onnx's export of a speech
enhancer) is read as any torch module is: :func:`~.torch_graph.graph_from_torch` captures
:func:`~xframe_bilstm.adapters.onnx.onnx_module`'s ``forward``, which runs each node as
ONNX defines the operator. What uses the reading checks it against the graph on
onnxruntime: ``compare`` runs the graph as its original, ``onnx_to_keras`` and
``onnx_to_torch`` compare their results with it. A refusal names the graph's nodes
(``applies aten.erf at Erf node '/Erf'``).

The batch axis must be dynamic. The axis after it that the graph leaves dynamic is time;
a graph that fixes every axis but the batch (``to_onnx`` of a Keras model whose input has
a length) is read at that length.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnsupportedFeatureError
from ..graph import ModelGraph
from .capture_walk import ForwardRefusal


def graph_from_onnx(proto: Any) -> ModelGraph:
    """The model graph of an ONNX graph, read through its interpreter's torch module.

    Raises:
        UnsupportedFeatureError: an operator the interpreter does not run, or what the
            capture of its module cannot read as layers, each named with its node.
    """
    from ..adapters.onnx import onnx_module
    from .torch_graph import graph_from_torch

    module = onnx_module(proto, capturable=True)
    try:
        return graph_from_torch(
            module, name=proto.graph.name or "onnx", input_shape=declared_shapes(proto)
        )
    except UnsupportedFeatureError as error:
        refused = _forward_refusal(error)
        if refused is None:
            raise UnsupportedFeatureError(
                f"the graph, read as the torch module that runs its nodes: {error}"
            ) from error
        raise UnsupportedFeatureError(
            f"the graph's nodes cannot all be read as layers: {'; '.join(refused.items)}"
        ) from error


def _forward_refusal(error: BaseException | None) -> ForwardRefusal | None:
    """The capture's refusal of the module's operations, in ``error`` or what caused it."""
    while error is not None and not isinstance(error, ForwardRefusal):
        error = error.__cause__
    return error


def declared_shapes(proto: Any) -> list[tuple[int | None, ...]] | None:
    """Each graph input's shape after the batch axis, None for the one dynamic axis (time);
    None when an input leaves several axes dynamic, so the capture guesses which is time.

    Raises:
        UnsupportedFeatureError: the first input fixes its batch axis: the graph was
            exported for one batch size (its sizes are constants in it).
    """
    from ..adapters.onnx.nodes import declared_dims

    initializers = {i.name for i in proto.graph.initializer}
    shapes: list[tuple[int | None, ...]] = []
    for graph_input in proto.graph.input:
        if graph_input.name in initializers:
            continue
        dims = declared_dims(graph_input)
        if not shapes and dims[:1] != [None]:
            raise UnsupportedFeatureError(
                f"graph input {graph_input.name!r} has the shape {_shown(dims)}, its batch "
                "fixed: the graph holds its sizes as constants and runs at them alone; export "
                "it with its batch and time axes dynamic (torch.onnx.export(..., dynamic_axes="
                f"{{{graph_input.name!r}: {{0: 'batch', <time axis>: 'time'}}}}))"
            )
        if dims[1:].count(None) > 1:
            return None
        shapes.append(tuple(dims[1:]))
    return shapes


def _shown(dims: list[int | None]) -> str:
    return f"({', '.join('dynamic' if d is None else str(d) for d in dims)})"


__all__ = ["declared_shapes", "graph_from_onnx"]
