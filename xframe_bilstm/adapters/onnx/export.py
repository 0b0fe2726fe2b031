"""Canonical stacks to ONNX models of native ``LSTM``/``GRU``/``RNN`` nodes and their glue.

The graph is built from the canonical weights with ``onnx.helper``, not traced: one native
recurrent node per canonical layer (:mod:`.node_export`) with its glue
(:mod:`.layer_export`) and Transposes around them, so the graph takes batch-first ``x``
(B, T, D) and returns exactly what the Keras layer returns, named by
:func:`~xframe_bilstm.canonical.output_names`. Weights and float tensors are float32 unless
another dtype is asked for (float16 runs on onnxruntime too).

onnx is imported inside the functions, so importing this module imports no framework.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._imports import require
from ...canonical import RecurrentStack, layer_state_names, output_names
from ...errors import UnsupportedFeatureError
from .builder import GraphBuilder
from .layer_export import export_layer, final_states
from .node_export import activation_attributes
from .vocabulary import (
    CARRY_OPSET,
    LENGTHS_INPUT,
    MIN_OPSET,
    REVERSE_OPSET,
    X_INPUT,
    initial_state_input_names,
    ir_version,
)

# Float dtypes the exporter writes, by the name of their onnx.TensorProto type.
FLOAT_TYPES = {"float32": "FLOAT", "float16": "FLOAT16"}


STATEFUL_REFUSAL = (
    "stack.stateful=True: an ONNX graph keeps no states between runs; export the "
    "stateless stack (dataclasses.replace(stack, stateful=False)) with "
    "with_initial_states=True and return_state=True, and feed each run's final "
    "states to the next"
)


def _check_exportable(stack: RecurrentStack, opset: int, with_lengths: bool) -> None:
    if stack.stateful:
        raise UnsupportedFeatureError(STATEFUL_REFUSAL)
    if opset < MIN_OPSET:
        raise UnsupportedFeatureError(
            f"opset={opset}: ONNX recurrent operators match Keras from opset {MIN_OPSET} on"
        )
    for index, layer in enumerate(stack.layers):
        activation_attributes(layer)  # raises naming an activation ONNX lacks
        is_last = index == len(stack.layers) - 1
        uses_sequence = not is_last or stack.return_sequences
        if layer.direction == "backward" and uses_sequence and opset < REVERSE_OPSET:
            raise UnsupportedFeatureError(
                f"layers[{index}] is go_backwards and its sequence is used: reversing it in "
                f"time needs Slice with negative steps, opset >= {REVERSE_OPSET}; got "
                f"opset={opset}"
            )
        if (
            with_lengths
            and is_last
            and not stack.return_sequences
            and layer.zero_masked_outputs
            and layer.direction == "forward"
        ):
            raise UnsupportedFeatureError(
                f"with_lengths=True: layers[{index}] has zero_masked_outputs and returns only "
                "its last output, which Keras zeroes for rows that end in padding; the export "
                "has no such glue; return sequences, or export without lengths"
            )
        carries = with_lengths and is_last and stack.return_sequences
        if carries and layer.direction == "forward" and opset < CARRY_OPSET:
            raise UnsupportedFeatureError(
                f"with_lengths=True: repeating the last valid output of layers[{index}] over "
                f"padding, as Keras does, needs Range, opset >= {CARRY_OPSET}; got "
                f"opset={opset}"
            )


def canonical_to_onnx(
    stack: RecurrentStack,
    *,
    opset: int,
    with_initial_states: bool = False,
    with_lengths: bool = False,
    graph_name: str = "xframe_bilstm",
    dtype: str = "float32",
) -> Any:
    """Build an ONNX model computing what the Keras form of ``stack`` computes.

    Args:
        stack: the canonical layers.
        opset: default-domain opset, at least 7.
        with_initial_states: add every layer's initial states as graph inputs (B, H), named
            by :func:`initial_state_input_names`; without, they are zeros.
        with_lengths: add an int32 ``lengths`` input (B,) of valid steps in right-padded
            rows, with Keras's mask semantics at padded positions.
        graph_name: the graph's name.
        dtype: ``"float32"`` or ``"float16"``: the dtype of the weights, of ``x``, the
            states and the outputs (onnxruntime has no float64 recurrent kernels on CPU).

    Returns:
        An ``onnx.ModelProto`` (not yet checked; :func:`xframe_bilstm.onnx_converters.to_onnx`
        checks it).

    Example:
        >>> from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer
        >>> w = DirectionWeights(np.zeros((3, 8)), np.zeros((2, 8)))
        >>> stack = RecurrentStack((RecurrentLayer("lstm", 3, 2, (w,)),), return_state=True)
        >>> model = canonical_to_onnx(stack, opset=14)
        >>> [o.name for o in model.graph.output]
        ['output', 'h', 'c']
    """
    onnx = require("onnx")
    _check_exportable(stack, opset, with_lengths)
    if dtype not in FLOAT_TYPES:
        raise UnsupportedFeatureError(f"dtype={dtype!r}: expected one of {sorted(FLOAT_TYPES)}")
    graph = GraphBuilder(onnx, opset, np.dtype(dtype))
    float_type = getattr(onnx.TensorProto, FLOAT_TYPES[dtype])
    int_type = onnx.TensorProto.INT32
    value_info = onnx.helper.make_tensor_value_info
    inputs = [value_info(X_INPUT, float_type, ["batch", "time", stack.input_size])]
    state_names = initial_state_input_names(stack) if with_initial_states else ()
    units = [layer.units for layer in stack.layers for _ in layer_state_names(layer)]
    inputs += [value_info(n, float_type, ["batch", u]) for n, u in zip(state_names, units)]
    lengths = LENGTHS_INPUT if with_lengths else None
    if lengths is not None:
        inputs.append(value_info(lengths, int_type, ["batch"]))

    sequence = graph.one("Transpose", [X_INPUT], "x_time_major", perm=[1, 0, 2])  # (T, B, D)
    remaining_states = list(state_names)
    for index, layer in enumerate(stack.layers):
        count = len(layer_state_names(layer))
        layer_states, remaining_states = remaining_states[:count], remaining_states[count:]
        is_last = index == len(stack.layers) - 1
        results = export_layer(
            graph,
            layer,
            f"layer{index}",
            sequence,
            layer_states,
            lengths,
            return_sequences=stack.return_sequences or not is_last,
            keep_padding=is_last,
        )
        sequence = results[0]
    finals = (
        final_states(graph, stack.last, f"layer{len(stack.layers) - 1}", results[-1])
        if stack.return_state
        else []
    )
    values = results[:-1] + tuple(finals)
    names = output_names(stack)
    outputs = []
    for index, (name, value, shape) in enumerate(zip(names, values, _output_shapes(stack))):
        if stack.return_sequences and index < len(results) - 1:  # (T, B, F) -> (B, T, F)
            graph.op("Transpose", [value], name, output_names=[name], perm=[1, 0, 2])
        else:
            graph.op("Identity", [value], name, output_names=[name])
        outputs.append(value_info(name, float_type, shape))
    model_graph = onnx.helper.make_graph(
        graph.nodes, graph_name, inputs, outputs, initializer=graph.initializers
    )
    return onnx.helper.make_model(
        model_graph,
        opset_imports=[onnx.helper.make_opsetid("", opset)],
        ir_version=ir_version(onnx, opset),
        producer_name="xframe_bilstm",
    )


def _output_shapes(stack: RecurrentStack) -> list[list[Any]]:
    last = stack.last
    unmerged = last.direction == "bidirectional" and last.merge_mode is None
    width = last.units if unmerged else last.output_size
    output = ["batch", "time", width] if stack.return_sequences else ["batch", width]
    count = 2 if unmerged else 1
    states = [["batch", last.units]] * len(layer_state_names(last)) if stack.return_state else []
    return [output] * count + states
