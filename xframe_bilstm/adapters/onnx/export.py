"""Canonical stacks to ONNX models of native ``LSTM``/``GRU``/``RNN`` nodes and their glue.

The graph is built from the canonical weights with ``onnx.helper``, not traced: one native
recurrent node per canonical layer, ``layout=0`` (time-major, the only layout onnxruntime's
CPU kernels accept) with Transposes around it, so the graph takes batch-first ``x``
(B, T, D) and returns exactly what the Keras layer returns, named by
:func:`~xframe_bilstm.canonical.output_names`. ONNX LSTMs use gate order ``iofc`` (Keras
``ifco``); GRUs use ``zrh`` as Keras does. ``B`` is ``[Wb, Rb]``: a canonical split bias
keeps its two rows, a single bias becomes ``Wb`` with ``Rb = 0``. Weights and float tensors
are float32 unless another dtype is asked for (float16 runs on onnxruntime too).

onnx is imported inside the functions, so importing this module imports no framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._imports import require
from ...canonical import (
    RecurrentLayer,
    RecurrentStack,
    layer_state_names,
    output_names,
)
from ...errors import UnsupportedFeatureError
from ...gates import CANONICAL_ORDER, ONNX_ORDER, reorder_gates
from .builder import GraphBuilder
from .vocabulary import (
    CARRY_OPSET,
    DEFAULT_ALPHA_BETA,
    LENGTHS_INPUT,
    MIN_OPSET,
    ONNX_ACTIVATIONS,
    ONNX_DIRECTION,
    OP_BY_CELL,
    READS_ALPHA_BETA,
    REVERSE_OPSET,
    X_INPUT,
    initial_state_input_names,
    ir_version,
)

# Float dtypes the exporter writes, by the name of their onnx.TensorProto type.
FLOAT_TYPES = {"float32": "FLOAT", "float16": "FLOAT16"}


def _onnx_weights(
    layer: RecurrentLayer, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(W [dirs, G·H, D], R [dirs, G·H, H], B [dirs, 2·G·H] or None) in ``dtype``."""
    source, target = CANONICAL_ORDER[layer.cell], ONNX_ORDER[layer.cell]
    w, r, b = [], [], []
    for weights in layer.weights:
        # Canonical (D, G·H) x-on-the-left becomes ONNX (G·H, D) W-on-the-left.
        w.append(reorder_gates(weights.kernel, source, target).T)
        r.append(reorder_gates(weights.recurrent_kernel, source, target).T)
        if weights.input_bias is not None:
            input_bias = reorder_gates(weights.input_bias, source, target)
            recurrent = weights.recurrent_bias
            # A single bias is Wb with Rb = 0: for GRU reset_after=False that is exact, since
            # ONNX's Rbh sits outside the reset gate where Keras has no bias.
            recurrent_bias = (
                np.zeros_like(input_bias)
                if recurrent is None
                else reorder_gates(recurrent, source, target)
            )
            b.append(np.concatenate([input_bias, recurrent_bias]))
    cast = lambda arrays: np.stack(arrays).astype(dtype)  # noqa: E731
    return cast(w), cast(r), (cast(b) if b else None)


def _activation_attributes(layer: RecurrentLayer) -> dict[str, Any]:
    names = [layer.recurrent_activation, layer.activation, layer.activation]
    if layer.cell == "gru":
        names = names[:2]
    elif layer.cell == "simple_rnn":
        names = [layer.activation]
    onnx_names, alphas, betas = [], [], []
    for name in names * len(layer.weights):
        assert name is not None  # checked by RecurrentLayer
        if name not in ONNX_ACTIVATIONS:
            raise UnsupportedFeatureError(
                f"activation {name!r} has no ONNX recurrent activation (ONNX offers "
                f"{', '.join(sorted(READS_ALPHA_BETA))}); supported here: "
                f"{sorted(ONNX_ACTIVATIONS)}"
            )
        onnx_name, alpha, beta = ONNX_ACTIVATIONS[name]
        reads_alpha, reads_beta = READS_ALPHA_BETA[onnx_name]
        default_alpha, default_beta = DEFAULT_ALPHA_BETA.get(onnx_name, (0.0, 0.0))
        onnx_names.append(onnx_name)
        # Every activation that reads a value gets one, defaults included: the lists are
        # consumed in order, so one missing entry would shift the later ones.
        if reads_alpha:
            alphas.append(default_alpha if alpha is None else alpha)
        if reads_beta:
            betas.append(default_beta if beta is None else beta)
    attributes: dict[str, Any] = {"activations": onnx_names}
    if alphas:
        attributes["activation_alpha"] = alphas
    if betas:
        attributes["activation_beta"] = betas
    return attributes


def _check_exportable(stack: RecurrentStack, opset: int, with_lengths: bool) -> None:
    if stack.stateful:
        raise UnsupportedFeatureError(
            "stack.stateful=True: an ONNX graph keeps no states between runs; export the "
            "stateless stack (dataclasses.replace(stack, stateful=False)) with "
            "with_initial_states=True and return_state=True, and feed each run's final "
            "states to the next"
        )
    if opset < MIN_OPSET:
        raise UnsupportedFeatureError(
            f"opset={opset}: ONNX recurrent operators match Keras from opset {MIN_OPSET} on"
        )
    for index, layer in enumerate(stack.layers):
        _activation_attributes(layer)  # raises naming an activation ONNX lacks
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
        >>> from xframe_bilstm.canonical import DirectionWeights
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
        _layer_finals(graph, stack.last, f"layer{len(stack.layers) - 1}", results[-1])
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


@dataclass(frozen=True)
class NodeOutputs:
    """What one exported recurrent node produced."""

    y: str  # (T, dirs, B, H)
    y_h: str  # (dirs, B, H)
    y_c: str | None  # (dirs, B, H), LSTM only


def export_layer(
    graph: GraphBuilder,
    layer: RecurrentLayer,
    prefix: str,
    sequence: str,
    states: Sequence[str],
    lengths: str | None,
    *,
    return_sequences: bool,
    keep_padding: bool,
) -> tuple[Any, ...]:
    """One layer: (output(s) (T, B, F) or (B, F) ..., then its NodeOutputs)."""
    node = recurrent_node(graph, layer, prefix, sequence, states, lengths)
    directions = len(layer.weights)
    if not return_sequences:
        finals = [
            graph.one("Gather", [node.y_h, graph.scalar_index(d)], f"{prefix}/h{d}", axis=0)
            for d in range(directions)
        ]  # each (B, H)
        return (*merge_directions(graph, layer, prefix, finals, feature_axis=1), node)
    if directions == 1:
        # (T, 1, B, H) -> (T, B, H)
        y = graph.one(
            "Reshape",
            [node.y, graph.ints("shape_t_b_h", [0, -1, layer.units])],
            f"{prefix}/sequence",
        )
        if layer.direction == "backward":
            # ONNX "reverse" outputs are aligned with input time; Keras's go_backwards keeps
            # processing order. With lengths too, the full flip is right: ONNX leaves zeros
            # past each length, which become the zeros Keras outputs before its first step.
            return reverse_time(graph, y, prefix), node
        if lengths is not None and keep_padding and not layer.zero_masked_outputs:
            return _carry_last_valid(graph, y, node.y_h, lengths, prefix), node
        return y, node
    if layer.merge_mode == "concat":
        # (T, 2, B, H) -> (T, B, 2, H) -> (T, B, 2H): forward features first, as Keras.
        y = graph.one("Transpose", [node.y], f"{prefix}/y_t_b_dirs_h", perm=[0, 2, 1, 3])
        merged = graph.one(
            "Reshape", [y, graph.ints("shape_t_b_merged", [0, 0, -1])], f"{prefix}/sequence"
        )
        return merged, node
    halves = [
        graph.one("Gather", [node.y, graph.scalar_index(d)], f"{prefix}/y{d}", axis=1)
        for d in range(2)
    ]  # each (T, B, H)
    return (*merge_directions(graph, layer, prefix, halves, feature_axis=2), node)


def merge_directions(
    graph: GraphBuilder, layer: RecurrentLayer, prefix: str, parts: list[str], *, feature_axis: int
) -> tuple[str, ...]:
    if len(parts) == 1 or layer.merge_mode is None:
        return tuple(parts)
    mode = layer.merge_mode
    if mode == "concat":
        return (graph.one("Concat", parts, f"{prefix}/concat", axis=feature_axis),)
    if mode == "mul":
        return (graph.one("Mul", parts, f"{prefix}/mul"),)
    total = graph.one("Add", parts, f"{prefix}/sum")
    if mode == "sum":
        return (total,)
    two = graph.constant("two", np.asarray(2.0, dtype=graph.float_dtype))
    return (graph.one("Div", [total, two], f"{prefix}/ave"),)  # Keras: (a + b) / 2


def _layer_finals(
    graph: GraphBuilder, layer: RecurrentLayer, prefix: str, node: NodeOutputs
) -> list[str]:
    """The layer's final states (B, H) in Keras order: h, c per direction."""
    finals = []
    for d in range(len(layer.weights)):
        for kind, source in (("h", node.y_h), ("c", node.y_c)):
            if source is not None:
                finals.append(
                    graph.one(
                        "Gather",
                        [source, graph.scalar_index(d)],
                        f"{prefix}/final_{kind}{d}",
                        axis=0,
                    )
                )
    return finals


def recurrent_node(
    graph: GraphBuilder,
    layer: RecurrentLayer,
    prefix: str,
    sequence: str,
    states: Sequence[str],
    lengths: str | None,
) -> NodeOutputs:
    w, r, b = _onnx_weights(layer, graph.float_dtype)
    directions = len(layer.weights)
    inputs = [
        sequence,
        graph.constant(f"{prefix}/W", w),
        graph.constant(f"{prefix}/R", r),
        "" if b is None else graph.constant(f"{prefix}/B", b),
        lengths or "",
    ]
    if states:
        per_direction = layer.num_states
        for kind in range(per_direction):
            # Keras order is [h, c] per direction; ONNX stacks each kind as [dirs, B, H].
            pieces = [states[d * per_direction + kind] for d in range(directions)]
            joined = (
                pieces[0]
                if directions == 1
                else graph.one("Concat", pieces, f"{prefix}/initial_{'hc'[kind]}_rows", axis=0)
            )
            inputs.append(
                graph.one(
                    "Reshape",
                    [
                        joined,
                        graph.ints(
                            f"shape_dirs{directions}_b_{layer.units}", [directions, -1, layer.units]
                        ),
                    ],
                    f"{prefix}/initial_{'hc'[kind]}",
                )
            )
    while inputs[-1] == "":
        inputs.pop()  # trailing optional inputs are left out, not named empty
    attributes: dict[str, Any] = {
        "hidden_size": layer.units,
        "direction": ONNX_DIRECTION[layer.direction],
        **_activation_attributes(layer),
    }
    if layer.cell == "gru":
        attributes["linear_before_reset"] = 1 if layer.reset_after else 0
    count = 3 if layer.cell == "lstm" else 2
    names = graph.op(
        OP_BY_CELL[layer.cell],
        inputs,
        prefix,
        outputs=count,
        output_names=[graph.name(f"{prefix}/{n}") for n in ("Y", "Y_h", "Y_c")[:count]],
        **attributes,
    )
    return NodeOutputs(names[0], names[1], names[2] if count == 3 else None)


def reverse_time(graph: GraphBuilder, sequence: str, prefix: str, axis: int = 0) -> str:
    """Flip ``sequence`` along its time ``axis``: Slice from the last step back, step -1."""
    return graph.one(
        "Slice",
        [
            sequence,
            graph.ints("start_last", [-1]),
            graph.ints("end_before_first", [np.iinfo(np.int64).min]),
            graph.ints(f"axis{axis}", [axis]),
            graph.ints("step_back", [-1]),
        ],
        f"{prefix}/processing_order",
    )


def _carry_last_valid(graph: GraphBuilder, y: str, y_h: str, lengths: str, prefix: str) -> str:
    """Keras's plain masked layers repeat the last valid output over padding.

    onnxruntime leaves zeros past each row's length and puts the state of its last valid
    step in Y_h, so the padded steps take Y_h: ``Where(t < length, Y, Y_h)``.
    """
    shape = graph.one("Shape", [y], f"{prefix}/shape")
    steps = graph.one("Gather", [shape, graph.scalar_index(0)], f"{prefix}/steps", axis=0)
    zero = graph.constant("zero", np.asarray(0, dtype=np.int64))
    one = graph.constant("one", np.asarray(1, dtype=np.int64))
    times = graph.one("Range", [zero, steps, one], f"{prefix}/times")  # (T,)
    times = graph.one(
        "Reshape", [times, graph.ints("shape_column", [-1, 1])], f"{prefix}/times_column"
    )  # (T, 1)
    rows = graph.one("Cast", [lengths], f"{prefix}/lengths64", to=graph.onnx.TensorProto.INT64)
    rows = graph.one(
        "Reshape", [rows, graph.ints("shape_row", [1, -1])], f"{prefix}/lengths_row"
    )  # (1, B)
    valid = graph.one("Less", [times, rows], f"{prefix}/valid")  # (T, B)
    valid = graph.one(
        "Reshape", [valid, graph.ints("shape_t_b_1", [0, 0, 1])], f"{prefix}/valid3"
    )  # (T, B, 1)
    return graph.one("Where", [valid, y, y_h], f"{prefix}/carried")  # Y_h (1, B, H) broadcasts
