"""``graph_to_canonical``: the canonical stack an ONNX graph of recurrent nodes computes.

Weights and options are read from the recurrent nodes (:mod:`.nodes`); what the glue between
them means (merge modes, ``go_backwards`` reversal, returned sequences and states, batch- or
time-major input) is found by probing: running the graph on :mod:`.interpreter`'s module and
every candidate stack on the float64 reference with one random input, and keeping the
candidate that matches. What no Keras layer computes (``clip``, ``input_forget``, peepholes,
other activations) is refused, naming node and attribute.

torch and onnx are imported inside the functions, so importing this module imports no
framework.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._imports import require
from ...canonical import DirectionWeights, RecurrentLayer, RecurrentStack, initial_state_count
from ...errors import UnsupportedFeatureError, WeightShapeError
from ...gates import CANONICAL_ORDER, ONNX_ORDER, reorder_gates
from .interpreter import onnx_module
from .nodes import (
    RecurrentNodeSpec,
    constant_values,
    read_recurrent_node,
    recurrent_in_subgraphs,
)
from .runtime import load_model
from .vocabulary import CELL_BY_OP, ONNX_ACTIVATIONS, READS_ALPHA_BETA

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
        reads_alpha, reads_beta = READS_ALPHA_BETA[name]
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
        >>> from xframe_bilstm.adapters.onnx import canonical_to_onnx
        >>> w = DirectionWeights(np.ones((1, 4)), np.zeros((1, 4)))
        >>> stack = RecurrentStack((RecurrentLayer("lstm", 1, 1, (w,), "backward"),))
        >>> graph_to_canonical(canonical_to_onnx(stack, opset=14)).layers[0].direction
        'backward'
    """
    torch = require("torch")
    proto = load_model(model_or_path)
    _refuse_control_flow(proto.graph)
    constants = constant_values(proto)
    specs = [
        read_recurrent_node(node, constants)
        for node in proto.graph.node
        if node.op_type in CELL_BY_OP
    ]
    if not specs:
        operators = sorted({node.op_type for node in proto.graph.node})
        raise UnsupportedFeatureError(
            "the graph has no LSTM, GRU or RNN node (its operators: "
            f"{', '.join(operators) or 'none'}); only graphs of recurrent nodes convert"
        )
    module = onnx_module(proto, dtype=torch.float64)
    outputs_by_layout, probe = _probe_graph(proto, module, specs[0].input_size)
    ranks = [o.ndim for outputs in outputs_by_layout.values() for o in outputs]
    closest = (np.inf, "")
    tried = 0
    for stack in _candidate_stacks(specs, ranks):
        if probe.states and len(probe.states) != initial_state_count(stack):
            continue
        tried += 1
        expected = _reference(stack, probe)
        for layout, actual in outputs_by_layout.items():
            error = _mismatch(expected, actual)
            if error <= _FLOAT32_MATCH * max(1.0, _scale(expected)):
                return stack
            closest = min(closest, (error, f"{_describe_stack(stack)} read {layout}"))
    raise UnsupportedFeatureError(_no_match(specs, tried, outputs_by_layout, probe, closest))


def _refuse_control_flow(graph: Any) -> None:
    """Refuse recurrent nodes inside If/Loop/Scan subgraphs: control flow is not converted."""
    nested = recurrent_in_subgraphs(graph)
    if nested:
        raise UnsupportedFeatureError(
            f"recurrent nodes sit in subgraphs of control flow: {'; '.join(nested)}. Control "
            "flow (If, Loop, Scan) is not converted, and which branch or how many iterations "
            "run depends on the inputs; export the recurrent part alone (a graph with its "
            "LSTM/GRU/RNN nodes at the top level) and convert that; onnx_to_torch runs graphs "
            "whose If nodes hold them"
        )


def _no_match(
    specs: list[RecurrentNodeSpec],
    tried: int,
    outputs_by_layout: dict[str, list[np.ndarray]],
    probe: _Probe,
    closest: tuple[float, str],
) -> str:
    """What was tried and why nothing matched, for the refusal of a graph."""
    nodes = ", ".join(f"{spec.name} ({spec.cell}, {spec.direction})" for spec in specs)
    head = (
        f"the graph's outputs match none of the {tried} Keras layers or stacks built from its "
        f"recurrent nodes {nodes} (every merge mode, return_sequences and return_state), each "
        f"compared with the graph run on a {probe.x.shape} input read "
        f"{' and '.join(outputs_by_layout)}"
    )
    if np.isfinite(closest[0]):
        return (
            f"{head}; the closest, {closest[1]}, is off by {closest[0]:.3g}. onnx_to_torch "
            "runs the graph as it is"
        )
    shapes = "; ".join(
        f"{layout}: {', '.join(str(a.shape) for a in arrays)}"
        for layout, arrays in outputs_by_layout.items()
    )
    advice = "Run the graph as it is with onnx_to_torch."
    if any(a.ndim == 4 for arrays in outputs_by_layout.values() for a in arrays):
        advice = (
            "A 4-D output is a recurrent node's raw Y (time, directions, batch, hidden), which "
            "no Keras layer returns: add the Transpose/Reshape that torch.onnx.export or "
            "to_onnx write after the node, or run the graph as it is with onnx_to_torch."
        )
    return (
        f"{head}; none had the graph's output shapes ({shapes}), where a Keras layer returns "
        f"(batch, time, features) or (batch, features), then (batch, units) states. {advice}"
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
    from ...reference import run_reference

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
