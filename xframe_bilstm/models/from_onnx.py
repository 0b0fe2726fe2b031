"""ONNX graphs read as the torch module the interpreter runs them on.

The recurrent reader of :mod:`xframe_bilstm.adapters.onnx` reads a graph of recurrent
nodes and glue (``graph_to_canonical``). Any other graph the interpreter runs (an
embedding of token ids and Dense heads, a convolution front end, a decoder of transposed
convolutions, normalization: torch.onnx's export of a tagger or a speech enhancer) is read
as any torch module is: :func:`~.torch_graph.graph_from_torch` captures
:func:`~xframe_bilstm.adapters.onnx.onnx_module`'s ``forward``, which runs each node as
ONNX defines the operator. What uses the reading checks it against the graph on
onnxruntime: ``compare`` runs the graph as its original, ``onnx_to_keras`` and
``onnx_to_torch`` compare their results with it. A refusal names the graph's nodes
(``applies aten.erf at Erf node '/Erf'``).

The capture runs on the inputs the graph declares (:func:`declared_inputs`), however many:
the first one's batch axis must be dynamic, or made so (a graph exported for one batch
size: :func:`~xframe_bilstm.adapters.onnx.free_batch.free_batch`); the last axis each
leaves dynamic after it is time, and a graph that fixes every axis but the batch
(``to_onnx`` of a Keras model whose input has a length) is read at that length. A graph
that declares its axes dynamic but runs at its export's sizes alone is refused saying so,
where onnxruntime cannot run it at other lengths either.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from .._imports import require
from ..errors import UnsupportedFeatureError
from ..graph import ModelGraph
from .capture_walk import ForwardRefusal
from .forward_inputs import ForwardInputs, lengths_places

_PROBED_STEPS = (7, 448)  # a short length and a long one: a window needs a long one


def graph_from_onnx(proto: Any) -> ModelGraph:
    """The model graph of an ONNX graph, read through its interpreter's torch module.

    Raises:
        UnsupportedFeatureError: an operator the interpreter does not run, or what the
            capture of its module cannot read as layers, each named with its node.
    """
    from ..adapters.onnx import onnx_module
    from ..adapters.onnx.free_batch import free_batch
    from .torch_graph import graph_from_torch

    proto = free_batch(proto) or proto  # a batch it cannot free is refused by its inputs
    module = onnx_module(proto, capturable=True)
    inputs = declared_inputs(proto)
    try:
        graph = graph_from_torch(module, name=proto.graph.name or "onnx", forward_inputs=inputs)
    except UnsupportedFeatureError as error:
        refused = _forward_refusal(error)
        if refused is None:
            fixed = None if inputs is None else _fixed_length(proto, module, inputs[-1])
            raise UnsupportedFeatureError(
                fixed or f"the graph, read as the torch module that runs its nodes: {error}"
            ) from error
        raise UnsupportedFeatureError(
            f"the graph's nodes cannot all be read as layers: {'; '.join(refused.items)}"
        ) from error
    named = f"ONNX graph {proto.graph.name!r}" if proto.graph.name else "ONNX graph"
    return dataclasses.replace(graph, source=named)


def _fixed_length(proto: Any, module: Any, inputs: ForwardInputs) -> str | None:
    """Why the graph cannot be read where onnxruntime cannot run it either, at a short and
    a long length (7 and 448 steps): it holds sizes of the input it was exported on
    (torch.onnx writes a transformer encoder layer's reshapes so), though its inputs
    declare them dynamic. None where it runs at one of them."""
    from ..adapters.onnx import run_onnxruntime
    from .torch_capture import example_arguments

    failures = []
    for steps in _PROBED_STEPS:
        at = dataclasses.replace(inputs, lengths=(steps, steps))
        arguments = example_arguments(module, at, 0)
        try:
            run_onnxruntime(proto, tuple(a.numpy() for a in arguments))
            return None
        except Exception as error:  # onnxruntime's own failure, whatever it is
            failures.append(_runtime_message(error))
    return (
        f"the graph does not run at {' or '.join(map(str, _PROBED_STEPS))} steps on "
        f"onnxruntime either ({failures[0]}): it holds sizes of the input it was exported "
        "on, though its inputs declare them dynamic, and runs at those alone; compare the "
        "module it was exported from instead (compare(module))"
    )


def _runtime_message(error: BaseException) -> str:
    """onnxruntime's error: the node it ran and what failed there, without its source.

    Example:
        >>> print(_runtime_message(RuntimeError(
        ...     "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running "
        ...     "Reshape node. Name:'/r' Status Message: /src/reshape.h:91 Helper(const "
        ...     "Shape&) size == requested was false. The input tensor cannot be reshaped.")))
        Reshape node '/r': The input tensor cannot be reshaped.
    """
    text = " ".join(str(error).split())
    node = re.search(r"running (\w+) node\. Name:'([^']*)' Status Message: (.*)", text)
    if node is None:
        return text[:300]
    detail = re.sub(r"^.* was false\. ", "", node.group(3))
    return f"{node.group(1)} node {node.group(2)!r}: {detail[:240]}"


def _forward_refusal(error: BaseException | None) -> ForwardRefusal | None:
    """The capture's refusal of the module's operations, in ``error`` or what caused it."""
    while error is not None and not isinstance(error, ForwardRefusal):
        error = error.__cause__
    return error


def declared_inputs(proto: Any) -> list[ForwardInputs] | None:
    """What the graph's inputs declare, as the inputs to capture its module on, likeliest
    first: each input's shape after the batch axis (None for a dynamic axis; the last one is
    time) and its dtype (integers as ids). An integer input of one value per row may hold
    the rows' lengths (``forward(x, lengths)``) or an id per row (a speaker): tried as the
    lengths first (an input named for them before the others), then as data; inputs whose
    first two axes are dynamic, then as time-major, (time, batch, ...); an input of a fixed
    first axis and a dynamic second (named for the batch, where it is the first input) has
    its batch second: one step's ids, (1, batch), or initial states, (layers, batch,
    units), as torch takes them. None for one
    input leaving several axes dynamic, so the capture guesses which is time.

    Raises:
        UnsupportedFeatureError: the first input fixes its batch axis: the graph was
            exported for one batch size, and ``free_batch`` could not free it.
    """
    from ..adapters.onnx.nodes import data_inputs, declared_dims, layer_name

    onnx = require("onnx")

    graph_inputs = data_inputs(proto)
    options: list[dict[str, Any]] = []
    later: list[dict[str, Any]] = []  # tried next: time-major where it may be
    for graph_input in graph_inputs:
        dims = declared_dims(graph_input)
        element = onnx.helper.tensor_dtype_to_np_dtype(graph_input.type.tensor_type.elem_type)
        dtype = "int64" if element.kind in "iu" else "float32"
        if _batch_second(graph_input, dims, first=not options):
            # (steps, batch, ...) of one length, or (layers, batch, units) initial states,
            # as torch's default layout takes them
            options.append({"shape": (dims[0], *dims[2:]), "dtype": dtype, "batch_axis": 1})
            later.append(options[-1])
            continue
        if not options and dims[:1] != [None]:
            raise UnsupportedFeatureError(
                f"graph input {graph_input.name!r} has the shape {_shown(dims)}, its batch "
                "fixed: the graph holds its batch size in constants not read here, and runs "
                "at that size alone; export "
                "it with its batch and time axes dynamic (torch.onnx.export(..., dynamic_axes="
                f"{{{graph_input.name!r}: {{0: 'batch', <time axis>: 'time'}}}}), or "
                "{0: 'time', 1: 'batch'} for an input taken time-major)"
            )
        options.append({"shape": tuple(dims[1:]), "dtype": dtype})
        dynamic = dims[:2] == [None, None]
        later.append({**options[-1], "batch_axis": 1} if dynamic else options[-1])
    if len(options) == 1 and options[0]["shape"].count(None) > 1:
        return None
    names = tuple(layer_name(i.name) for i in graph_inputs)
    places = [
        at
        for at in lengths_places(list(names))
        if all(options[i]["shape"] == () and options[i]["dtype"] == "int64" for i in at)
    ]
    with_lengths = [
        ForwardInputs(tuple(o for i, o in enumerate(options) if i not in at), at, names=names)
        for at in places
    ]
    guesses = [*with_lengths, ForwardInputs(tuple(options), names=names)]
    if later != options:  # (time, batch, ...), as torch's default layout exports them
        guesses.append(ForwardInputs(tuple(later), names=names))
    return guesses


def _batch_second(graph_input: Any, dims: list[int | None], first: bool) -> bool:
    """Whether an input's batch axis is its second: its first fixed, its second dynamic,
    and, for the first input (whose batch is otherwise its first axis), named for the batch
    (``dynamic_axes={'input_step': {1: 'batch'}}``)."""
    if len(dims) < 2 or dims[0] is None or dims[1] is not None:
        return False
    name = graph_input.type.tensor_type.shape.dim[1].dim_param.lower()
    return not first or "batch" in name or name in ("b", "bs", "n")


def _shown(dims: list[int | None]) -> str:
    return f"({', '.join('dynamic' if d is None else str(d) for d in dims)})"


__all__ = ["declared_inputs", "graph_from_onnx"]
