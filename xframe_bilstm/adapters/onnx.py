"""ONNX adapter: canonical stacks to ONNX graphs of native ``LSTM``/``GRU``/``RNN`` nodes, back,
and runners.

Rules of this module:

- onnx, onnxruntime and torch are imported inside functions (``require(...)``), so importing
  this module imports no framework.
- The exported graph is built from the canonical weights with ``onnx.helper``, not traced:
  one native recurrent node per canonical layer, ``layout=0`` (time-major, the only layout
  onnxruntime's CPU kernels accept) with Transposes around it, so the graph takes
  batch-first ``x`` (B, T, D) and returns exactly what the Keras layer returns, named by
  :func:`~xframe_bilstm.canonical.output_names`.
- Gate orders: ONNX LSTMs use ``iofc`` (Keras ``ifco``); GRUs use ``zrh`` as Keras does.
  ``B`` is ``[Wb, Rb]``: a canonical split bias keeps its two rows, a single bias becomes
  ``Wb`` with ``Rb = 0``.
- Graphs are float32: onnxruntime's CPU recurrent kernels have no float64 version.
- Importing (:func:`graph_to_canonical`, :func:`onnx_module`) reads the recurrent nodes
  attribute by attribute; an attribute that changes the math and has no exact equivalent
  (``clip``, ``input_forget``, peepholes ``P``) is computed exactly by the torch interpreter
  and refused by the canonical form, never ignored.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._imports import require
from ..canonical import (
    DirectionWeights,
    RecurrentLayer,
    RecurrentStack,
    initial_state_count,
    layer_state_names,
    output_names,
)
from ..errors import UnsupportedFeatureError, WeightShapeError
from ..gates import CANONICAL_ORDER, ONNX_ORDER, reorder_gates

# The lowest opset whose LSTM/GRU/RNN match today's (opset 7 dropped ``output_sequence``).
MIN_OPSET = 7
# Reversing a dynamic time axis needs Slice with negative steps (opset 10).
REVERSE_OPSET = 10
# Repeating the last valid output over padding needs Range (opset 11).
CARRY_OPSET = 11

_OP_BY_CELL = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "RNN"}
_CELL_BY_OP = {op: cell for cell, op in _OP_BY_CELL.items()}
_ONNX_DIRECTION = {"forward": "forward", "backward": "reverse", "bidirectional": "bidirectional"}

# Canonical activation -> (ONNX RNN activation, alpha, beta); None keeps the ONNX default.
# Keras 3's hard_sigmoid is x/6 + 0.5; ONNX's HardSigmoid defaults (0.2, 0.5) are Keras 2's.
ONNX_ACTIVATIONS: dict[str, tuple[str, float | None, float | None]] = {
    "tanh": ("Tanh", None, None),
    "sigmoid": ("Sigmoid", None, None),
    "relu": ("Relu", None, None),
    "hard_sigmoid_keras3": ("HardSigmoid", 1.0 / 6.0, 0.5),
    "hard_sigmoid_keras2": ("HardSigmoid", 0.2, 0.5),
    "linear": ("Affine", 1.0, 0.0),
    "softsign": ("Softsign", None, None),
    "softplus": ("Softplus", None, None),
    "elu": ("Elu", 1.0, None),
}

# Which ONNX RNN activations read an alpha and a beta. onnxruntime hands out
# ``activation_alpha`` and ``activation_beta`` (two separate lists) in order, one value to
# each activation that reads it; activations that read none take no entry.
_READS_ALPHA_BETA = {
    "Relu": (False, False),
    "Tanh": (False, False),
    "Sigmoid": (False, False),
    "Affine": (True, True),
    "LeakyRelu": (True, False),
    "ThresholdedRelu": (True, False),
    "ScaledTanh": (True, True),
    "HardSigmoid": (True, True),
    "Elu": (True, False),
    "Softsign": (False, False),
    "Softplus": (False, False),
}
# Defaults where an activation reads a value the lists do not provide (onnxruntime's).
_DEFAULT_ALPHA_BETA = {
    "LeakyRelu": (0.01, 0.0),
    "HardSigmoid": (0.2, 0.5),
    "Elu": (1.0, 0.0),
}


# --------------------------------------------------------------------------- names


def initial_state_input_names(stack: RecurrentStack) -> tuple[str, ...]:
    """Graph input names of every layer's initial states, in Keras order.

    One layer: ``initial_h``, ``initial_c`` (``initial_h_forward``, ... when bidirectional);
    several: the same with a ``layer{i}_`` prefix.

    Example:
        >>> w = DirectionWeights(np.zeros((3, 8)), np.zeros((2, 8)))
        >>> layer = RecurrentLayer("lstm", 3, 2, (w, w), "bidirectional")
        >>> initial_state_input_names(RecurrentStack((layer,)))
        ('initial_h_forward', 'initial_c_forward', 'initial_h_backward', 'initial_c_backward')
        >>> initial_state_input_names(RecurrentStack((layer, layer.__class__(
        ...     "lstm", 4, 2, (w.__class__(np.zeros((4, 8)), np.zeros((2, 8))),)))))[-2:]
        ('layer1_initial_h', 'layer1_initial_c')
    """
    several = len(stack.layers) > 1
    return tuple(
        (f"layer{index}_" if several else "") + "initial_" + name
        for index, layer in enumerate(stack.layers)
        for name in layer_state_names(layer)
    )


LENGTHS_INPUT = "lengths"
X_INPUT = "x"


# --------------------------------------------------------------------------- opsets


def newest_runtime_opset() -> int:
    """The newest default-domain opset that the installed onnxruntime loads (cached).

    Found by loading a one-node model at each opset from onnx's newest down, since
    onnxruntime publishes no such number. Without onnxruntime, onnx's newest opset.

    Example:
        >>> newest_runtime_opset() >= 14
        True
    """
    if _NEWEST_OPSET:
        return _NEWEST_OPSET[0]
    onnx = require("onnx")
    newest = int(onnx.defs.onnx_opset_version())
    try:
        ort = require("onnxruntime")
    except ImportError:
        return newest
    for opset in range(newest, MIN_OPSET - 1, -1):
        model = _identity_model(onnx, opset)
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception:  # onnxruntime raises its own exception types; any means "no"
            continue
        _NEWEST_OPSET.append(opset)
        return opset
    raise UnsupportedFeatureError(
        f"the installed onnxruntime {ort.__version__} loads no opset from {MIN_OPSET} to {newest}"
    )


_NEWEST_OPSET: list[int] = []


def _identity_model(onnx: Any, opset: int) -> Any:
    helper, float_type = onnx.helper, onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", float_type, [1])],
        [helper.make_tensor_value_info("y", float_type, [1])],
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        ir_version=_ir_version(onnx, opset),
    )


def _ir_version(onnx: Any, opset: int) -> int:
    # The oldest IR version that knows this opset, so older runtimes load the model; at least
    # 4, from which initializers need not be listed as graph inputs.
    return max(4, int(onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)])))


# --------------------------------------------------------------------------- export


class _Graph:
    """Nodes, initializers and unique names of a graph under construction."""

    def __init__(self, onnx: Any, opset: int) -> None:
        self.onnx, self.opset = onnx, opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._used: set[str] = set()
        self._constants: dict[tuple[str, str, tuple[int, ...], bytes], str] = {}

    def name(self, hint: str) -> str:
        name, count = hint, 1
        while name in self._used:
            name, count = f"{hint}_{count}", count + 1
        self._used.add(name)
        return name

    def constant(self, hint: str, array: np.ndarray) -> str:
        array = np.asarray(array)
        key = (hint, array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:  # one initializer per distinct small constant
            name = self.name(hint)
            self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
            self._constants[key] = name
        return self._constants[key]

    def ints(self, hint: str, values: Sequence[int]) -> str:
        return self.constant(hint, np.asarray(values, dtype=np.int64))

    def scalar_index(self, value: int) -> str:
        return self.constant(f"index{value}", np.asarray(value, dtype=np.int64))

    def op(
        self,
        op_type: str,
        inputs: Sequence[str],
        hint: str,
        *,
        outputs: int = 1,
        output_names: Sequence[str] | None = None,
        **attributes: Any,
    ) -> list[str]:
        names = list(
            output_names
            or [self.name(f"{hint}_{i}" if outputs > 1 else hint) for i in range(outputs)]
        )
        self.nodes.append(
            self.onnx.helper.make_node(
                op_type, list(inputs), names, name=self.name(f"{hint}/{op_type}"), **attributes
            )
        )
        return names

    def one(self, op_type: str, inputs: Sequence[str], hint: str, **attributes: Any) -> str:
        return self.op(op_type, inputs, hint, **attributes)[0]


def _onnx_weights(layer: RecurrentLayer) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(W [dirs, G·H, D], R [dirs, G·H, H], B [dirs, 2·G·H] or None) in float32."""
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
    as32 = lambda arrays: np.stack(arrays).astype(np.float32)  # noqa: E731
    return as32(w), as32(r), (as32(b) if b else None)


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
                f"{', '.join(sorted(_READS_ALPHA_BETA))}); supported here: "
                f"{sorted(ONNX_ACTIVATIONS)}"
            )
        onnx_name, alpha, beta = ONNX_ACTIVATIONS[name]
        reads_alpha, reads_beta = _READS_ALPHA_BETA[onnx_name]
        default_alpha, default_beta = _DEFAULT_ALPHA_BETA.get(onnx_name, (0.0, 0.0))
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

    Returns:
        An ``onnx.ModelProto`` (not yet checked; :func:`xframe_bilstm.onnx_converters.to_onnx`
        checks it).

    Example:
        >>> w = DirectionWeights(np.zeros((3, 8)), np.zeros((2, 8)))
        >>> stack = RecurrentStack((RecurrentLayer("lstm", 3, 2, (w,)),), return_state=True)
        >>> model = canonical_to_onnx(stack, opset=14)
        >>> [o.name for o in model.graph.output]
        ['output', 'h', 'c']
    """
    onnx = require("onnx")
    _check_exportable(stack, opset, with_lengths)
    graph = _Graph(onnx, opset)
    float_type, int_type = onnx.TensorProto.FLOAT, onnx.TensorProto.INT32
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
        results = _export_layer(
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
        ir_version=_ir_version(onnx, opset),
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
class _NodeOutputs:
    """What one exported recurrent node produced."""

    y: str  # (T, dirs, B, H)
    y_h: str  # (dirs, B, H)
    y_c: str | None  # (dirs, B, H), LSTM only


def _export_layer(
    graph: _Graph,
    layer: RecurrentLayer,
    prefix: str,
    sequence: str,
    states: Sequence[str],
    lengths: str | None,
    *,
    return_sequences: bool,
    keep_padding: bool,
) -> tuple[Any, ...]:
    """One layer: (output(s) (T, B, F) or (B, F) ..., then its _NodeOutputs)."""
    node = _recurrent_node(graph, layer, prefix, sequence, states, lengths)
    directions = len(layer.weights)
    if not return_sequences:
        finals = [
            graph.one("Gather", [node.y_h, graph.scalar_index(d)], f"{prefix}/h{d}", axis=0)
            for d in range(directions)
        ]  # each (B, H)
        return (*_merge(graph, layer, prefix, finals, feature_axis=1), node)
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
            return _reverse_time(graph, y, prefix), node
        if lengths is not None and keep_padding:
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
    return (*_merge(graph, layer, prefix, halves, feature_axis=2), node)


def _merge(
    graph: _Graph, layer: RecurrentLayer, prefix: str, parts: list[str], *, feature_axis: int
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
    two = graph.constant("two", np.asarray(2.0, dtype=np.float32))
    return (graph.one("Div", [total, two], f"{prefix}/ave"),)  # Keras: (a + b) / 2


def _layer_finals(
    graph: _Graph, layer: RecurrentLayer, prefix: str, node: _NodeOutputs
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


def _recurrent_node(
    graph: _Graph,
    layer: RecurrentLayer,
    prefix: str,
    sequence: str,
    states: Sequence[str],
    lengths: str | None,
) -> _NodeOutputs:
    w, r, b = _onnx_weights(layer)
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
        "direction": _ONNX_DIRECTION[layer.direction],
        **_activation_attributes(layer),
    }
    if layer.cell == "gru":
        attributes["linear_before_reset"] = 1 if layer.reset_after else 0
    count = 3 if layer.cell == "lstm" else 2
    names = graph.op(
        _OP_BY_CELL[layer.cell],
        inputs,
        prefix,
        outputs=count,
        output_names=[graph.name(f"{prefix}/{n}") for n in ("Y", "Y_h", "Y_c")[:count]],
        **attributes,
    )
    return _NodeOutputs(names[0], names[1], names[2] if count == 3 else None)


def _reverse_time(graph: _Graph, sequence: str, prefix: str) -> str:
    """Flip (T, B, F) along time: Slice from the last step backwards with step -1."""
    return graph.one(
        "Slice",
        [
            sequence,
            graph.ints("start_last", [-1]),
            graph.ints("end_before_first", [np.iinfo(np.int64).min]),
            graph.ints("axis0", [0]),
            graph.ints("step_back", [-1]),
        ],
        f"{prefix}/processing_order",
    )


def _carry_last_valid(graph: _Graph, y: str, y_h: str, lengths: str, prefix: str) -> str:
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


# --------------------------------------------------------------------------- running


def load_model(model_or_path: Any) -> Any:
    """An ``onnx.ModelProto`` from a ModelProto, serialized bytes or a file path.

    Example:
        >>> load_model(b"").graph.name
        ''
    """
    onnx = require("onnx")
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    if isinstance(model_or_path, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model_or_path))
    if isinstance(model_or_path, (str, os.PathLike)):
        return onnx.load(os.fspath(model_or_path))
    raise UnsupportedFeatureError(
        f"{type(model_or_path).__name__} is not an ONNX model; pass an onnx.ModelProto, its "
        "serialized bytes or a path to a .onnx file"
    )


def run_onnxruntime(
    model: Any,
    x: np.ndarray,
    *,
    initial_states: Sequence[np.ndarray] | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
    providers: Sequence[str] | None = None,
) -> tuple[np.ndarray, ...]:
    """Run an exported model on onnxruntime and return its outputs in graph order.

    For a graph made by :func:`canonical_to_onnx` that order is
    :func:`~xframe_bilstm.canonical.output_names`. State inputs the graph has but the call
    does not give are fed zeros (Keras's default), and a ``lengths`` input the call does not
    give is fed the full length.

    Args:
        model: a ModelProto, its bytes or a path.
        x: input (B, T, D), cast to float32.
        initial_states: every layer's initial states in Keras order, each (B, H); the graph
            must have been exported ``with_initial_states=True``.
        lengths: valid steps per row (B,); the graph must have been exported
            ``with_lengths=True``.
        providers: onnxruntime execution providers; default CPU.

    Returns:
        numpy arrays, one per graph output.

    Example:
        >>> w = DirectionWeights(np.ones((1, 1)), np.zeros((1, 1)))
        >>> stack = RecurrentStack((RecurrentLayer("simple_rnn", 1, 1, (w,),
        ...     activation="linear", recurrent_activation=None),))
        >>> (y,) = run_onnxruntime(canonical_to_onnx(stack, opset=14), np.ones((1, 2, 1)))
        >>> y.tolist()
        [[[1.0], [1.0]]]
    """
    ort = require("onnxruntime")
    proto = load_model(model)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise WeightShapeError(f"x: expected shape (batch, time, features), got {x.shape}")
    graph_inputs = [i.name for i in proto.graph.input]
    initializers = {i.name for i in proto.graph.initializer}
    graph_inputs = [name for name in graph_inputs if name not in initializers]
    feeds: dict[str, np.ndarray] = {graph_inputs[0]: x}
    state_inputs = [n for n in graph_inputs[1:] if n != LENGTHS_INPUT]
    if initial_states is not None:
        if len(initial_states) != len(state_inputs):
            raise WeightShapeError(
                f"initial_states: the graph takes {len(state_inputs)} state inputs "
                f"{state_inputs} (export with with_initial_states=True to add them), got "
                f"{len(initial_states)} arrays"
            )
        feeds.update((n, np.asarray(s, np.float32)) for n, s in zip(state_inputs, initial_states))
    else:
        for graph_input in proto.graph.input:
            dims = graph_input.type.tensor_type.shape.dim
            if graph_input.name not in state_inputs:
                continue
            if len(dims) != 2 or not dims[1].dim_value:
                raise WeightShapeError(
                    f"graph input {graph_input.name!r} is not a (batch, units) state; pass it"
                )
            feeds[graph_input.name] = np.zeros((x.shape[0], dims[1].dim_value), np.float32)
    if LENGTHS_INPUT in graph_inputs:
        values = np.full(x.shape[0], x.shape[1]) if lengths is None else np.asarray(lengths)
        feeds[LENGTHS_INPUT] = _check_lengths(values, x).astype(np.int32)
    elif lengths is not None:
        raise UnsupportedFeatureError(
            "lengths: the graph has no 'lengths' input; export it with with_lengths=True"
        )
    session = ort.InferenceSession(
        proto.SerializeToString(), providers=list(providers or ["CPUExecutionProvider"])
    )
    return tuple(np.asarray(value) for value in session.run(None, feeds))


def _check_lengths(values: np.ndarray, x: np.ndarray) -> np.ndarray:
    batch, steps = x.shape[0], x.shape[1]
    if values.shape != (batch,) or not np.issubdtype(values.dtype, np.integer):
        raise WeightShapeError(
            f"lengths: expected {batch} integers (one per batch row), got {values.dtype} "
            f"array of shape {values.shape}"
        )
    if values.min() < 1 or values.max() > steps:
        raise WeightShapeError(
            f"lengths: each must be in 1..{steps} (the number of steps), got {values.tolist()}"
        )
    return values


# --------------------------------------------------------------------------- reading graphs


def node_attributes(node: Any) -> dict[str, Any]:
    """A node's attributes as Python values (strings decoded).

    Example:
        >>> import onnx
        >>> node = onnx.helper.make_node("LSTM", ["x"], ["y"], direction="reverse")
        >>> node_attributes(node)
        {'direction': 'reverse'}
    """
    onnx = require("onnx")
    values = {}
    for attribute in node.attribute:
        value = onnx.helper.get_attribute_value(attribute)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode() for v in value]
        values[attribute.name] = value
    return values


def describe_node(node: Any) -> str:
    """``'LSTM node "name"'`` for messages (the first output when the node has no name)."""
    return f"{node.op_type} node {node.name or (node.output[0] if node.output else '?')!r}"


def constant_values(model: Any) -> dict[str, np.ndarray]:
    """Every tensor whose value the graph fixes: initializers, Constant nodes, their Identity."""
    onnx = require("onnx")
    graph = model.graph
    values = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = _constant_node_value(onnx, node)
        elif node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def _constant_node_value(onnx: Any, node: Any) -> np.ndarray:
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if "value" in attributes:
        return onnx.numpy_helper.to_array(attributes["value"])
    for key, dtype in (
        ("value_float", np.float32),
        ("value_floats", np.float32),
        ("value_int", np.int64),
        ("value_ints", np.int64),
    ):
        if key in attributes:
            return np.asarray(attributes[key], dtype=dtype)
    raise UnsupportedFeatureError(
        f"{describe_node(node)}: only value, value_float(s) and value_int(s) constants are "
        f"supported, got {sorted(attributes)}"
    )


@dataclass(frozen=True)
class RecurrentNodeSpec:
    """One ONNX LSTM/GRU/RNN node, read and checked: weights in ONNX layout, float32 or wider.

    ``activations`` holds, per direction, ``(ONNX name, alpha, beta)`` for each activation
    slot (LSTM f, g, h; GRU f, g; RNN f), with onnxruntime's reading of the alpha and beta
    lists already applied.
    """

    node: Any
    cell: str
    directions: int
    direction: str
    hidden_size: int
    input_size: int
    layout: int
    w: np.ndarray  # (dirs, G·H, D), ONNX gate order
    r: np.ndarray  # (dirs, G·H, H)
    b: np.ndarray | None  # (dirs, 2·G·H) = [Wb, Rb]
    p: np.ndarray | None  # (dirs, 3H) peepholes i, o, f (LSTM only)
    activations: tuple[tuple[tuple[str, float, float], ...], ...]
    clip: float | None
    input_forget: bool
    linear_before_reset: bool

    @property
    def name(self) -> str:
        return describe_node(self.node)


_SLOTS = {"lstm": ("Sigmoid", "Tanh", "Tanh"), "gru": ("Sigmoid", "Tanh"), "simple_rnn": ("Tanh",)}
_KNOWN_ATTRIBUTES = {
    "activation_alpha",
    "activation_beta",
    "activations",
    "clip",
    "direction",
    "hidden_size",
    "input_forget",
    "layout",
    "linear_before_reset",
}


def read_recurrent_node(node: Any, constants: dict[str, np.ndarray]) -> RecurrentNodeSpec:
    """Read an LSTM/GRU/RNN node's attributes and constant weights, checking every one.

    Raises:
        UnsupportedFeatureError: weights that are not constants, unknown attributes or
            activations, alpha/beta lists that do not fit the activations.
        WeightShapeError: weights whose shapes do not fit ``hidden_size``.
    """
    cell = _CELL_BY_OP[node.op_type]
    attributes = node_attributes(node)
    unknown = sorted(set(attributes) - _KNOWN_ATTRIBUTES)
    if unknown:
        raise UnsupportedFeatureError(f"{describe_node(node)}: unknown attributes {unknown}")
    direction = attributes.get("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise UnsupportedFeatureError(f"{describe_node(node)}: direction={direction!r}")
    directions = 2 if direction == "bidirectional" else 1
    if "hidden_size" not in attributes:
        raise UnsupportedFeatureError(f"{describe_node(node)}: hidden_size is required")
    hidden = int(attributes["hidden_size"])
    gates = len(CANONICAL_ORDER[cell])
    inputs = list(node.input) + [""] * 8

    def constant(index: int, name: str) -> np.ndarray | None:
        tensor = inputs[index]
        if tensor == "":
            return None
        if tensor not in constants:
            raise UnsupportedFeatureError(
                f"{describe_node(node)}: input {name} ({tensor!r}) is computed at run time; "
                "only constant weights (initializers or Constant nodes) can be read"
            )
        return np.asarray(constants[tensor])

    w, r = constant(1, "W"), constant(2, "R")
    if w is None or r is None:
        raise UnsupportedFeatureError(f"{describe_node(node)}: W and R are required")
    b = constant(3, "B")
    p = constant(7, "P") if cell == "lstm" else None
    input_size = int(w.shape[-1])
    expected = {
        "W": (w, (directions, gates * hidden, input_size)),
        "R": (r, (directions, gates * hidden, hidden)),
        "B": (b, (directions, 2 * gates * hidden)),
        "P": (p, (directions, 3 * hidden)),
    }
    for name, (array, shape) in expected.items():
        if array is not None and array.shape != shape:
            raise WeightShapeError(
                f"{describe_node(node)}: input {name} expected shape {shape} (hidden_size="
                f"{hidden}, {directions} direction(s)), got {array.shape}"
            )
    layout = int(attributes.get("layout", 0))
    if layout not in (0, 1):
        raise UnsupportedFeatureError(f"{describe_node(node)}: layout={layout}")
    clip = attributes.get("clip")
    return RecurrentNodeSpec(
        node=node,
        cell=cell,
        directions=directions,
        direction=direction,
        hidden_size=hidden,
        input_size=input_size,
        layout=layout,
        w=w,
        r=r,
        b=b,
        p=p,
        activations=_read_activations(node, cell, directions, attributes),
        clip=None if clip is None else float(clip),
        input_forget=bool(attributes.get("input_forget", 0)),
        linear_before_reset=bool(attributes.get("linear_before_reset", 0)),
    )


def _read_activations(
    node: Any, cell: str, directions: int, attributes: dict[str, Any]
) -> tuple[tuple[tuple[str, float, float], ...], ...]:
    slots = _SLOTS[cell]
    names = list(attributes.get("activations", list(slots) * directions))
    if len(names) != len(slots) * directions:
        raise UnsupportedFeatureError(
            f"{describe_node(node)}: activations expected {len(slots) * directions} names "
            f"({len(slots)} per direction), got {names}"
        )
    alphas = list(attributes.get("activation_alpha", []))
    betas = list(attributes.get("activation_beta", []))
    resolved = []
    for name in names:
        canonical_name = next((k for k in _READS_ALPHA_BETA if k.lower() == name.lower()), None)
        if canonical_name is None:
            raise UnsupportedFeatureError(
                f"{describe_node(node)}: activation {name!r} is not an ONNX recurrent "
                f"activation ({', '.join(sorted(_READS_ALPHA_BETA))})"
            )
        reads_alpha, reads_beta = _READS_ALPHA_BETA[canonical_name]
        default_alpha, default_beta = _DEFAULT_ALPHA_BETA.get(canonical_name, (None, None))
        alpha = alphas.pop(0) if reads_alpha and alphas else default_alpha
        beta = betas.pop(0) if reads_beta and betas else default_beta
        if (reads_alpha and alpha is None) or (reads_beta and beta is None):
            raise UnsupportedFeatureError(
                f"{describe_node(node)}: activation {name} needs "
                f"{'activation_alpha' if alpha is None else 'activation_beta'} values, which "
                "the node does not give (the specification sets no default)"
            )
        resolved.append((canonical_name, float(alpha or 0.0), float(beta or 0.0)))
    if alphas or betas:
        raise UnsupportedFeatureError(
            f"{describe_node(node)}: activation_alpha/activation_beta have {len(alphas)}/"
            f"{len(betas)} values more than its activations {names} read (onnxruntime gives "
            "one value to each activation that reads one, in order); ambiguous, refused"
        )
    per = len(slots)
    return tuple(tuple(resolved[d * per : (d + 1) * per]) for d in range(directions))


# --------------------------------------------------------------------------- torch interpreter

# Glue operators the interpreter runs (with torch ops), besides LSTM, GRU and RNN.
GLUE_OPS = frozenset(
    {
        "Add", "And", "Cast", "Concat", "Constant", "ConstantOfShape", "Div", "Equal",
        "Expand", "Flatten", "Gather", "Greater", "Identity", "Less", "Mul", "Neg", "Not",
        "Or", "Range", "Reshape", "ReverseSequence", "Shape", "Slice", "Split", "Squeeze",
        "Sub", "Tile", "Transpose", "Unsqueeze", "Where",
    }
)  # fmt: skip


def onnx_module(model_or_path: Any, *, dtype: Any = None) -> Any:
    """A torch module that runs an ONNX graph of recurrent nodes and glue, exactly.

    ``forward`` takes the graph's inputs (not its initializers) in graph order and returns its
    outputs in graph order and layouts (one tensor when there is one output). LSTM/GRU/RNN
    nodes run on native ``nn.LSTM``/``nn.GRU``/``nn.RNN`` modules where those compute them
    exactly (default activations, no ``clip``, ``input_forget`` or peepholes, GRU
    ``linear_before_reset=1``), else on an exact loop of the ONNX equations.

    Args:
        model_or_path: a ModelProto, its bytes or a path.
        dtype: torch dtype of the computation; default float32.

    Raises:
        UnsupportedFeatureError: an operator outside LSTM/GRU/RNN and :data:`GLUE_OPS`,
            naming the operator and the node.

    Example:
        >>> w = DirectionWeights(np.ones((1, 1)), np.zeros((1, 1)))
        >>> stack = RecurrentStack((RecurrentLayer("simple_rnn", 1, 1, (w,),
        ...                                        recurrent_activation=None),))
        >>> module = onnx_module(canonical_to_onnx(stack, opset=14))
        >>> type(module.recurrent[0].native).__name__
        'RNN'
    """
    torch = require("torch")
    return _interpreter_classes().OnnxGraphModule(
        load_model(model_or_path), torch.float32 if dtype is None else dtype
    )


_CLASSES: list[Any] = []


def _interpreter_classes() -> Any:
    """Define the torch classes on first use, so that importing this module needs no torch."""
    if not _CLASSES:
        _CLASSES.append(_define_interpreter_classes())
    return _CLASSES[0]


def _define_interpreter_classes() -> Any:
    torch = require("torch")
    onnx = require("onnx")
    from types import SimpleNamespace

    from torch import nn
    from torch.nn import functional as F

    from ..gates import TORCH_ORDER

    def activation(name: str, alpha: float, beta: float) -> Any:
        functions = {
            "Relu": torch.relu,
            "Tanh": torch.tanh,
            "Sigmoid": torch.sigmoid,
            "Affine": lambda v: alpha * v + beta,
            "LeakyRelu": lambda v: torch.where(v >= 0, v, alpha * v),
            "ThresholdedRelu": lambda v: torch.where(v > alpha, v, torch.zeros_like(v)),
            "ScaledTanh": lambda v: alpha * torch.tanh(beta * v),
            "HardSigmoid": lambda v: torch.clamp(alpha * v + beta, 0.0, 1.0),
            "Elu": lambda v: torch.where(v >= 0, v, alpha * torch.expm1(torch.clamp(v, max=0))),
            "Softsign": F.softsign,
            # log(1 + e^x) without overflow (onnxruntime's own overflows above ~88).
            "Softplus": lambda v: torch.logaddexp(v, torch.zeros_like(v)),
        }
        return functions[name]

    def reverse_valid(x: Any, lengths: Any) -> Any:
        """Reverse each row's valid steps of batch-first ``x``, padding left in place."""
        if lengths is None:
            return x.flip(1)
        steps = torch.arange(x.shape[1], device=x.device)[None, :]
        last = lengths[:, None] - 1
        index = torch.where(steps <= last, last - steps, steps)
        return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))

    class OnnxRecurrent(nn.Module):
        """One ONNX LSTM/GRU/RNN node; ``forward`` has the node's inputs and outputs."""

        def __init__(self, spec: RecurrentNodeSpec, dtype: Any) -> None:
            super().__init__()
            self.cell, self.directions = spec.cell, spec.directions
            self.hidden, self.layout = spec.hidden_size, spec.layout
            self.reverse_only = spec.direction == "reverse"
            self.activations, self.clip = spec.activations, spec.clip
            self.input_forget, self.linear_before_reset = (
                spec.input_forget,
                spec.linear_before_reset,
            )
            self.native = self._native(spec, dtype)
            if self.native is None:
                as_parameter = lambda a: nn.Parameter(torch.tensor(a, dtype=dtype))  # noqa: E731
                self.w, self.r = as_parameter(spec.w), as_parameter(spec.r)
                gates = spec.w.shape[1]
                b = np.zeros((spec.directions, 2 * gates)) if spec.b is None else spec.b
                self.b = as_parameter(b)
                p = np.zeros((spec.directions, 3 * spec.hidden_size)) if spec.p is None else spec.p
                self.p = as_parameter(p)

        @staticmethod
        def _native(spec: RecurrentNodeSpec, dtype: Any) -> Any:
            names = {tuple(name for name, _, _ in slots) for slots in spec.activations}
            if spec.clip is not None or spec.input_forget or spec.p is not None:
                return None
            if spec.cell == "gru" and not spec.linear_before_reset:
                return None
            options: dict[str, Any] = {}
            if spec.cell == "simple_rnn":
                if names not in ({("Tanh",)}, {("Relu",)}):
                    return None
                options["nonlinearity"] = next(iter(names))[0].lower()
            elif names != {_SLOTS[spec.cell]}:
                return None
            kind = {"lstm": nn.LSTM, "gru": nn.GRU, "simple_rnn": nn.RNN}[spec.cell]
            module = kind(
                spec.input_size,
                spec.hidden_size,
                bias=spec.b is not None,
                bidirectional=spec.directions == 2,
                **options,
            ).to(dtype)
            source, target = ONNX_ORDER[spec.cell], TORCH_ORDER[spec.cell]
            with torch.no_grad():
                for d, suffix in enumerate(("", "_reverse")[: spec.directions]):
                    arrays = {
                        "weight_ih_l0": reorder_gates(spec.w[d], source, target, axis=0),
                        "weight_hh_l0": reorder_gates(spec.r[d], source, target, axis=0),
                    }
                    if spec.b is not None:
                        wb, rb = np.split(spec.b[d], 2)
                        arrays["bias_ih_l0"] = reorder_gates(wb, source, target)
                        arrays["bias_hh_l0"] = reorder_gates(rb, source, target)
                    for name, array in arrays.items():
                        getattr(module, name + suffix).copy_(torch.tensor(array))
            return module

        def forward(
            self, x: Any, lengths: Any = None, h0: Any = None, c0: Any = None
        ) -> tuple[Any, Any, Any]:
            if self.layout == 1:  # batch-major: x (B, T, D), states (B, dirs, H)
                x = x.transpose(0, 1)
                h0 = None if h0 is None else h0.transpose(0, 1)
                c0 = None if c0 is None else c0.transpose(0, 1)
            steps, batch = x.shape[0], x.shape[1]
            shape = (self.directions, batch, self.hidden)
            h0 = x.new_zeros(shape) if h0 is None else h0
            c0 = x.new_zeros(shape) if c0 is None else c0
            lengths = None if lengths is None else lengths.long()
            if lengths is not None and (int(lengths.min()) < 1 or int(lengths.max()) > steps):
                raise WeightShapeError(
                    f"sequence_lens: each must be in 1..{steps}, got {lengths.tolist()}"
                )
            if self.native is not None:
                y, h_n, c_n = self._run_native(x, lengths, h0, c0)
            else:
                y, h_n, c_n = self._run_loop(x, lengths, h0, c0)
            y = y.reshape(steps, batch, self.directions, self.hidden).permute(0, 2, 1, 3)
            if self.layout == 1:  # Y (B, T, dirs, H), Y_h (B, dirs, H)
                return y.permute(2, 0, 1, 3), h_n.transpose(0, 1), c_n.transpose(0, 1)
            return y, h_n, c_n  # (T, dirs, B, H), (dirs, B, H), (dirs, B, H)

        def _run_native(self, x: Any, lengths: Any, h0: Any, c0: Any) -> tuple[Any, Any, Any]:
            if self.reverse_only:  # a lone reverse direction: native forward on reversed rows
                x = reverse_valid(x.transpose(0, 1), lengths).transpose(0, 1)
            hx = (h0, c0) if self.cell == "lstm" else h0
            if lengths is None:
                y, state = self.native(x, hx)
            else:
                packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
                y, state = self.native(packed, hx)
                y, _ = nn.utils.rnn.pad_packed_sequence(y, total_length=x.shape[0])
            if self.reverse_only:
                y = reverse_valid(y.transpose(0, 1), lengths).transpose(0, 1)
            h_n, c_n = state if self.cell == "lstm" else (state, torch.zeros_like(state))
            return y, h_n, c_n

        def _run_loop(self, x: Any, lengths: Any, h0: Any, c0: Any) -> tuple[Any, Any, Any]:
            x = x.transpose(0, 1)  # (B, T, D)
            outputs, finals_h, finals_c = [], [], []
            for d in range(self.directions):
                reverse = self.reverse_only or d == 1
                sequence = reverse_valid(x, lengths) if reverse else x
                y, h, c = self._direction(d, sequence, lengths, h0[d], c0[d])
                outputs.append(reverse_valid(y, lengths) if reverse else y)
                finals_h.append(h)
                finals_c.append(c)
            y = torch.cat(outputs, dim=-1).transpose(0, 1)  # (T, B, dirs·H)
            return y, torch.stack(finals_h), torch.stack(finals_c)

        def _direction(self, d: int, x: Any, lengths: Any, h: Any, c: Any) -> tuple[Any, Any, Any]:
            acts = [activation(*slot) for slot in self.activations[d]]
            f = acts[0]
            g = acts[1] if len(acts) > 1 else acts[0]
            out = acts[2] if len(acts) > 2 else g
            wb, rb = self.b[d].chunk(2)
            bound = self.clip
            clip = (lambda v: v) if bound is None else (lambda v: torch.clamp(v, -bound, bound))
            projected = F.linear(x, self.w[d], wb)  # (B, T, G·H)
            valid = None
            if lengths is not None:
                valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
            outputs = []
            for t in range(x.shape[1]):
                if self.cell == "lstm":
                    zi, zo, zf, zc = (projected[:, t] + F.linear(h, self.r[d], rb)).chunk(4, -1)
                    pi, po, pf = self.p[d].chunk(3)
                    i = f(clip(zi + pi * c))
                    forget = 1 - i if self.input_forget else f(clip(zf + pf * c))
                    new_c = forget * c + i * g(clip(zc))
                    new_h = f(clip(zo + po * new_c)) * out(new_c)
                elif self.cell == "gru":
                    new_c = c
                    xz, xr, xh = projected[:, t].chunk(3, -1)
                    r_z, r_r, r_h = self.r[d].chunk(3, 0)
                    b_z, b_r, b_h = rb.chunk(3)
                    z = f(clip(xz + F.linear(h, r_z, b_z)))
                    reset = f(clip(xr + F.linear(h, r_r, b_r)))
                    if self.linear_before_reset:
                        candidate = g(clip(xh + reset * F.linear(h, r_h, b_h)))
                    else:
                        candidate = g(clip(xh + F.linear(reset * h, r_h, b_h)))
                    new_h = (1 - z) * candidate + z * h
                else:
                    new_c = c
                    new_h = f(clip(projected[:, t] + F.linear(h, self.r[d], rb)))
                if valid is None:
                    h, c = new_h, new_c
                    outputs.append(h)
                else:  # past a row's length the states stay and the output is zero
                    keep = valid[:, t, None]
                    h = torch.where(keep, new_h, h)
                    c = torch.where(keep, new_c, c)
                    outputs.append(torch.where(keep, h, torch.zeros_like(h)))
            return torch.stack(outputs, dim=1), h, c

    class OnnxGraphModule(nn.Module):
        """Runs an ONNX graph node by node: glue with torch ops, recurrent nodes as modules."""

        def __init__(self, model: Any, dtype: Any) -> None:
            super().__init__()
            self.dtype = dtype
            graph = model.graph
            self.opset = next(
                (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1
            )
            constants = constant_values(model)
            initializers = {i.name for i in graph.initializer}
            self.input_names = [i.name for i in graph.input if i.name not in initializers]
            self.output_names = [o.name for o in graph.output]
            self.nodes: list[tuple[Any, dict[str, Any], int | None]] = []
            self.recurrent = nn.ModuleList()
            for node in graph.node:
                if node.domain not in ("", "ai.onnx"):
                    raise UnsupportedFeatureError(
                        f"{describe_node(node)}: operator domain {node.domain!r} is not supported"
                    )
                if node.op_type in _CELL_BY_OP:
                    spec = read_recurrent_node(node, constants)
                    self.nodes.append((node, node_attributes(node), len(self.recurrent)))
                    self.recurrent.append(OnnxRecurrent(spec, dtype))
                elif node.op_type in GLUE_OPS:
                    self.nodes.append((node, node_attributes(node), None))
                else:
                    raise UnsupportedFeatureError(
                        f"{describe_node(node)}: operator {node.op_type} is not supported (the "
                        f"interpreter runs LSTM, GRU, RNN and {', '.join(sorted(GLUE_OPS))})"
                    )
            # Constant tensors other than recurrent weights, as buffers (moved by .to()).
            used = {name for node, _, index in self.nodes if index is None for name in node.input}
            self.constant_names = sorted(used & set(constants))
            for k, name in enumerate(self.constant_names):
                self.register_buffer(f"constant{k}", self._tensor(constants[name]))

        def _tensor(self, array: np.ndarray) -> Any:
            tensor = torch.from_numpy(np.array(array))
            return tensor.to(self.dtype) if tensor.is_floating_point() else tensor

        def forward(self, *inputs: Any) -> Any:
            if len(inputs) != len(self.input_names):
                raise WeightShapeError(
                    f"expected {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}"
                )
            values: dict[str, Any] = {"": None}
            for k, name in enumerate(self.constant_names):
                values[name] = getattr(self, f"constant{k}")
            for name, value in zip(self.input_names, inputs):
                tensor = torch.as_tensor(value)
                values[name] = tensor.to(self.dtype) if tensor.is_floating_point() else tensor
            for node, attributes, index in self.nodes:
                args = [values.get(name) if name else None for name in node.input]
                if index is not None:
                    results = self._recurrent(index, args)
                else:
                    results = self._glue(node, attributes, args)
                for name, result in zip(node.output, results):
                    if name:
                        values[name] = result
            outputs = tuple(values[name] for name in self.output_names)
            return outputs[0] if len(outputs) == 1 else outputs

        def _recurrent(self, index: int, args: list[Any]) -> tuple[Any, ...]:
            args = args + [None] * (8 - len(args))
            x, lengths, h0, c0 = args[0], args[4], args[5], args[6]
            return self.recurrent[index](x, lengths, h0, c0)

        def _glue(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> tuple[Any, ...]:
            op = node.op_type
            handler = getattr(self, f"_op_{op}", None)
            if handler is not None:
                return handler(node, attributes, args)
            binary = {
                "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Less": torch.lt,
                "Greater": torch.gt, "Equal": torch.eq, "And": torch.logical_and,
                "Or": torch.logical_or,
            }  # fmt: skip
            if op in binary:
                return (binary[op](args[0], args[1]),)
            unary = {"Neg": torch.neg, "Not": torch.logical_not, "Identity": lambda v: v}
            return (unary[op](args[0]),)

        # Each _op_* follows the ONNX operator; older opsets keep some inputs as attributes.

        def _ints(self, attributes: dict[str, Any], args: list[Any], name: str, index: int) -> Any:
            if name in attributes:
                return [int(v) for v in attributes[name]]
            if len(args) > index and args[index] is not None:
                return [int(v) for v in args[index].reshape(-1).tolist()]
            return None

        def _op_Constant(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            return (self._tensor(_constant_node_value(onnx, node)),)

        def _op_Div(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            a, b = args
            if a.is_floating_point():
                return (a / b,)
            return (torch.div(a, b, rounding_mode="trunc"),)

        def _op_Cast(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            target = onnx.helper.tensor_dtype_to_np_dtype(attributes["to"])
            if np.issubdtype(target, np.floating):
                return (args[0].to(self.dtype),)
            return (args[0].to(torch.from_numpy(np.zeros(0, target)).dtype),)

        def _op_Shape(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            dims = list(args[0].shape)
            start, end = attributes.get("start", 0), attributes.get("end", len(dims))
            return (torch.tensor(dims[slice(start, end)], dtype=torch.int64),)

        def _op_Gather(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            data, indices = args
            axis = attributes.get("axis", 0) % data.dim()
            flat = indices.reshape(-1).long() % data.shape[axis]
            picked = data.index_select(axis, flat)
            shape = (*data.shape[:axis], *indices.shape, *data.shape[axis + 1 :])
            return (picked.reshape(shape),)

        def _op_Unsqueeze(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            axes = self._ints(attributes, args, "axes", 1) or []
            rank = args[0].dim() + len(axes)
            result = args[0]
            for axis in sorted(a % rank for a in axes):
                result = result.unsqueeze(axis)
            return (result,)

        def _op_Squeeze(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            axes = self._ints(attributes, args, "axes", 1)
            if axes is None:
                return (args[0].squeeze(),)
            rank = args[0].dim()
            return (args[0].squeeze(tuple(a % rank for a in axes)),)

        def _op_Concat(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            return (torch.cat([a for a in args if a is not None], dim=attributes["axis"]),)

        def _op_ConstantOfShape(
            self, node: Any, attributes: dict[str, Any], args: list[Any]
        ) -> Any:
            fill = attributes.get("value")
            value = np.zeros(1, np.float32) if fill is None else onnx.numpy_helper.to_array(fill)
            shape = [int(v) for v in args[0].tolist()]
            return (self._tensor(value).reshape(()).expand(shape).clone(),)

        def _op_Transpose(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            perm = attributes.get("perm", list(range(args[0].dim()))[::-1])
            return (args[0].permute(*perm),)

        def _op_Reshape(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            data = args[0]
            shape = self._ints(attributes, args, "shape", 1) or []
            if not attributes.get("allowzero", 0):
                shape = [data.shape[i] if v == 0 else v for i, v in enumerate(shape)]
            return (data.reshape(shape),)

        def _op_Flatten(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            data = args[0]
            axis = attributes.get("axis", 1) % (data.dim() + 1)
            return (data.reshape(int(np.prod(data.shape[:axis])), -1),)

        def _op_Slice(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            data = args[0]
            starts = self._ints(attributes, args, "starts", 1)
            ends = self._ints(attributes, args, "ends", 2)
            axes = self._ints(attributes, args, "axes", 3) or list(range(len(starts)))
            steps = self._ints({}, args, "steps", 4) or [1] * len(starts)
            for start, end, axis, step in zip(starts, ends, axes, steps):
                axis %= data.dim()
                # Python slices clamp out-of-range bounds as ONNX does, for either step sign.
                index = range(*slice(start, end, step).indices(data.shape[axis]))
                data = data.index_select(axis, torch.tensor(list(index), dtype=torch.long))
            return (data,)

        def _op_Split(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            data, axis = args[0], attributes.get("axis", 0)
            sizes = self._ints(attributes, args, "split", 1)
            if sizes is None:
                count = attributes.get("num_outputs", len(node.output))
                size = -(-data.shape[axis] // count)  # the last piece may be smaller
                return tuple(data.split(size, dim=axis))
            return tuple(data.split(sizes, dim=axis))

        def _op_Expand(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            shape = torch.broadcast_shapes(args[0].shape, tuple(int(v) for v in args[1].tolist()))
            return (args[0].expand(shape),)

        def _op_Tile(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            return (args[0].repeat(*[int(v) for v in args[1].tolist()]),)

        def _op_Where(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            return (torch.where(args[0].bool(), args[1], args[2]),)

        def _op_Range(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            start, limit, delta = (a.reshape(()) for a in args)
            return (torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype),)

        def _op_ReverseSequence(
            self, node: Any, attributes: dict[str, Any], args: list[Any]
        ) -> Any:
            data, lengths = args
            batch_axis = attributes.get("batch_axis", 1)
            time_axis = attributes.get("time_axis", 0)
            order = [batch_axis, time_axis] + [
                a for a in range(data.dim()) if a not in (batch_axis, time_axis)
            ]
            moved = data.permute(*order)  # (B, T, ...)
            flat = moved.reshape(moved.shape[0], moved.shape[1], -1)
            flipped = reverse_valid(flat, lengths.long()).reshape(moved.shape)
            return (flipped.permute(*np.argsort(order).tolist()),)

    return SimpleNamespace(OnnxRecurrent=OnnxRecurrent, OnnxGraphModule=OnnxGraphModule)


# --------------------------------------------------------------------------- graph -> canonical

# Canonical activation by ONNX (name, alpha, beta); alpha/beta are float32 attributes, so they
# are matched to float32 precision.
_CANONICAL_BY_ONNX = {
    (onnx_name, alpha, beta): canonical
    for canonical, (onnx_name, alpha, beta) in ONNX_ACTIVATIONS.items()
}
_FLOAT32_MATCH = 1e-6
# Random identification input: small, with B != T so that a time-major reading cannot pass
# for a batch-major one.
_PROBE_BATCH, _PROBE_STEPS = 3, 5
_PROBE_LENGTHS = (5, 2, 1)


def _canonical_activation(spec: RecurrentNodeSpec, slot: tuple[str, float, float]) -> str:
    name, alpha, beta = slot
    for (onnx_name, want_alpha, want_beta), canonical in _CANONICAL_BY_ONNX.items():
        if onnx_name != name:
            continue
        reads_alpha, reads_beta = _READS_ALPHA_BETA[name]
        if reads_alpha and abs(alpha - (want_alpha if want_alpha is not None else 0)) > (
            _FLOAT32_MATCH
        ):
            continue
        if reads_beta and abs(beta - (want_beta if want_beta is not None else 0)) > (
            _FLOAT32_MATCH
        ):
            continue
        return canonical
    raise UnsupportedFeatureError(
        f"{spec.name}: activation {name}(alpha={alpha:g}, beta={beta:g}) has no Keras "
        "equivalent; Keras layers take tanh, sigmoid, relu, HardSigmoid(1/6, 0.5) (Keras 3) "
        "or (0.2, 0.5) (Keras 2), Affine(1, 0) (linear), softsign, softplus, Elu(1)"
    )


def _layer_options(spec: RecurrentNodeSpec) -> tuple[str, str | None]:
    """(activation, recurrent_activation) of the canonical layer, refusing what it lacks."""
    if spec.clip is not None:
        raise UnsupportedFeatureError(
            f"{spec.name}: clip={spec.clip:g} clamps the gate pre-activations, which Keras "
            "and PyTorch layers never do; onnx_to_torch runs it exactly"
        )
    if spec.input_forget:
        raise UnsupportedFeatureError(
            f"{spec.name}: input_forget=1 couples the forget gate to the input gate "
            "(f = 1 - i), which Keras and PyTorch layers lack; onnx_to_torch runs it exactly"
        )
    if spec.p is not None and np.any(spec.p):
        raise UnsupportedFeatureError(
            f"{spec.name}: peephole weights P are non-zero; Keras and PyTorch LSTMs have no "
            "peepholes; onnx_to_torch runs them exactly"
        )
    per_direction = {
        tuple(_canonical_activation(spec, slot) for slot in slots) for slots in spec.activations
    }
    if len(per_direction) > 1:
        raise UnsupportedFeatureError(
            f"{spec.name}: the directions use different activations {sorted(per_direction)}; "
            "a Keras layer has one set for both"
        )
    (names,) = per_direction
    if spec.cell == "simple_rnn":
        return names[0], None
    if spec.cell == "lstm" and names[1] != names[2]:
        raise UnsupportedFeatureError(
            f"{spec.name}: activations g={names[1]} and h={names[2]} differ; Keras uses its "
            "one activation for both"
        )
    return names[1], names[0]


def _direction_weights(spec: RecurrentNodeSpec, d: int) -> DirectionWeights:
    source, target = ONNX_ORDER[spec.cell], CANONICAL_ORDER[spec.cell]
    kernel = reorder_gates(spec.w[d].T, source, target)
    recurrent = reorder_gates(spec.r[d].T, source, target)
    if spec.b is None:
        return DirectionWeights(kernel, recurrent)
    wb, rb = (reorder_gates(row, source, target) for row in np.split(spec.b[d], 2))
    if spec.cell == "gru" and not spec.linear_before_reset:
        if np.any(np.split(rb, 3)[2]):
            raise UnsupportedFeatureError(
                f"{spec.name}: linear_before_reset=0 with a non-zero recurrent bias Rbh of the "
                "h gate; Keras's reset_after=False GRU has no bias there"
            )
        return DirectionWeights(kernel, recurrent, wb + rb)  # z and r biases fold exactly once
    return DirectionWeights(kernel, recurrent, np.stack([wb, rb]))


def _layer_candidates(spec: RecurrentNodeSpec, is_last: bool) -> list[RecurrentLayer]:
    activation, recurrent_activation = _layer_options(spec)
    weights = tuple(_direction_weights(spec, d) for d in range(spec.directions))
    direction = {"forward": "forward", "reverse": "backward"}.get(spec.direction, "bidirectional")
    merges: list[str | None] = ["concat"]
    if direction == "bidirectional":
        merges = ["concat", "sum", "mul", "ave"] + ([None] if is_last else [])
    return [
        RecurrentLayer(
            spec.cell,
            spec.input_size,
            spec.hidden_size,
            weights,
            direction=direction,
            merge_mode=merge,
            activation=activation,
            recurrent_activation=recurrent_activation,
            reset_after=spec.linear_before_reset if spec.cell == "gru" else None,
        )
        for merge in merges
    ]


def _candidate_stacks(specs: list[RecurrentNodeSpec], ranks: list[int]) -> list[RecurrentStack]:
    import itertools

    options = [_layer_candidates(s, i == len(specs) - 1) for i, s in enumerate(specs)]
    stacks = []
    for layers in itertools.product(*options):
        for return_sequences in (True, False) if 3 in ranks else (False,):
            for return_state in (True, False):
                try:
                    stacks.append(RecurrentStack(layers, return_sequences, return_state))
                except (UnsupportedFeatureError, WeightShapeError):
                    continue  # sizes or merge modes that do not chain
    return stacks


def graph_to_canonical(model_or_path: Any) -> RecurrentStack:
    """The canonical stack an ONNX graph of recurrent nodes computes, found and verified.

    Weights and options are read from the LSTM/GRU/RNN nodes, attribute by attribute. What
    the glue between them means (merge modes, go_backwards reversal, whether the last layer
    returns sequences and states, batch- or time-major input) is found by running the graph
    (:func:`onnx_module`, float64) and every candidate stack (the float64 reference) on one
    random input, with random states and lengths where the graph takes them, and keeping the
    candidate whose outputs match the graph's leading outputs. Trailing graph outputs with no
    Keras meaning (such as torch's stacked ``h_n``) are left to :func:`onnx_module`.

    Raises:
        UnsupportedFeatureError: no recurrent node; an attribute Keras cannot express
            (``clip``, ``input_forget``, peepholes, activations); or outputs that no Keras
            layer computes (e.g. an ONNX reverse direction left aligned with input time).

    Example:
        >>> w = DirectionWeights(np.ones((1, 4)), np.zeros((1, 4)))
        >>> stack = RecurrentStack((RecurrentLayer("lstm", 1, 1, (w,), "backward"),))
        >>> graph_to_canonical(canonical_to_onnx(stack, opset=14)).layers[0].direction
        'backward'
    """
    torch = require("torch")
    proto = load_model(model_or_path)
    constants = constant_values(proto)
    specs = [
        read_recurrent_node(node, constants)
        for node in proto.graph.node
        if node.op_type in _CELL_BY_OP
    ]
    if not specs:
        raise UnsupportedFeatureError("the graph has no LSTM, GRU or RNN node")
    module = onnx_module(proto, dtype=torch.float64)
    outputs_by_layout, probe = _probe_graph(proto, module, specs[0].input_size)
    ranks = [o.ndim for outputs in outputs_by_layout.values() for o in outputs]
    closest = (np.inf, "")
    for stack in _candidate_stacks(specs, ranks):
        if probe.states and len(probe.states) != initial_state_count(stack):
            continue
        expected = _reference(stack, probe)
        for layout, actual in outputs_by_layout.items():
            error = _mismatch(expected, actual)
            if error <= _FLOAT32_MATCH * max(1.0, _scale(expected)):
                return stack
            closest = min(closest, (error, f"{_describe_stack(stack)} read {layout}"))
    raise UnsupportedFeatureError(
        "the graph's outputs match no Keras layer or stack built from its recurrent nodes "
        f"(closest: {closest[1]}, off by {closest[0]:.3g}); onnx_to_torch runs it as it is"
    )


@dataclass(frozen=True)
class _Probe:
    x: np.ndarray  # (B, T, D)
    states: list[np.ndarray]
    lengths: np.ndarray | None


def _probe_graph(
    proto: Any, module: Any, input_size: int
) -> tuple[dict[str, list[np.ndarray]], _Probe]:
    """Run the graph on a random input, batch- and time-major: outputs per reading."""
    torch = require("torch")
    onnx = require("onnx")
    rng = np.random.default_rng(0)
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    x = rng.standard_normal((_PROBE_BATCH, _PROBE_STEPS, input_size))
    states, lengths, feeds = [], None, []
    for graph_input in inputs[1:]:
        tensor_type = graph_input.type.tensor_type
        dims = [d.dim_value or d.dim_param for d in tensor_type.shape.dim]
        if tensor_type.elem_type in (onnx.TensorProto.INT32, onnx.TensorProto.INT64):
            if len(dims) != 1 or lengths is not None:
                raise UnsupportedFeatureError(
                    f"graph input {graph_input.name!r}: integer inputs other than one (batch,) "
                    "lengths vector have no Keras meaning"
                )
            lengths = np.asarray(_PROBE_LENGTHS)
            feeds.append(("lengths", lengths))
        elif len(dims) == 2 and isinstance(dims[1], int) and dims[1] > 0:
            states.append(rng.standard_normal((_PROBE_BATCH, dims[1])))
            feeds.append(("state", states[-1]))
        else:
            raise UnsupportedFeatureError(
                f"graph input {graph_input.name!r} of shape {dims}: only (batch, units) initial "
                "states in Keras order and a (batch,) lengths vector have a Keras meaning"
            )
    probe = _Probe(x, states, lengths)
    results: dict[str, list[np.ndarray]] = {}
    for layout in ("batch-major", "time-major"):
        first = x if layout == "batch-major" else x.transpose(1, 0, 2)
        tensors = [torch.from_numpy(np.ascontiguousarray(first))]
        for kind, value in feeds:
            if kind == "lengths":
                elem = inputs[len(tensors)].type.tensor_type.elem_type
                dtype = np.int32 if elem == onnx.TensorProto.INT32 else np.int64
                tensors.append(torch.from_numpy(value.astype(dtype)))
            else:
                tensors.append(torch.from_numpy(value))
        try:
            with torch.no_grad():
                outputs = module(*tensors)
        except Exception:  # this reading's shapes do not fit the graph; try the other
            continue
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        arrays = [o.detach().numpy() for o in outputs]
        if layout == "time-major":
            arrays = [a.transpose(1, 0, 2) if a.ndim == 3 else a for a in arrays]
        results[layout] = arrays
    if not results:
        raise UnsupportedFeatureError(
            "the graph runs on neither a batch-major nor a time-major (batch, time, "
            f"{input_size}) input"
        )
    return results, probe


def _reference(stack: RecurrentStack, probe: _Probe) -> tuple[np.ndarray, ...]:
    from ..reference import run_reference

    return run_reference(stack, probe.x, initial_states=probe.states or None, lengths=probe.lengths)


def _mismatch(expected: tuple[np.ndarray, ...], actual: list[np.ndarray]) -> float:
    if len(actual) < len(expected):
        return np.inf
    worst = 0.0
    for e, a in zip(expected, actual):
        if e.shape != a.shape:
            return np.inf
        worst = max(worst, float(np.max(np.abs(e - a), initial=0.0)))
    return worst


def _scale(arrays: tuple[np.ndarray, ...]) -> float:
    return max(float(np.max(np.abs(a), initial=0.0)) for a in arrays)


def _describe_stack(stack: RecurrentStack) -> str:
    layers = ", ".join(
        f"{layer.cell} {layer.direction}"
        + (f" merge_mode={layer.merge_mode}" if layer.direction == "bidirectional" else "")
        for layer in stack.layers
    )
    return f"[{layers}] return_sequences={stack.return_sequences} return_state={stack.return_state}"
