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
from .patterns import layer_groups, loop_refusal, reads_reversed
from .probe import Probe, probe_graph, run_probe
from .runtime import load_model
from .vocabulary import ONNX_ACTIVATIONS, READS_ALPHA_BETA

# Canonical activation by ONNX (name, alpha, beta); alpha/beta are float32 attributes, so they
# are matched to float32 precision.
_CANONICAL_BY_ONNX = {
    (onnx_name, alpha, beta): canonical
    for canonical, (onnx_name, alpha, beta) in ONNX_ACTIVATIONS.items()
}
_FLOAT32_MATCH = 1e-6


# What to do with an int8 graph (its DynamicQuantizeLSTM nodes are not LSTM layers).
_INT8_HINT = (
    ". It is an int8 graph: adapters.onnx.quantized.dequantized_model(graph) is the float "
    "graph it approximates, with LSTM nodes, and quantization.quantization_error(graph) "
    "reports what the quantization cost"
)


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


def layer_candidates(
    specs: list[RecurrentNodeSpec], reversed_inputs: list[bool], is_last: bool
) -> list[RecurrentLayer]:
    """Every Keras layer one node, or a pair of single-direction nodes, may compute; the
    first is the node read on its own (a bidirectional node concatenates, a reverse node
    runs backward), as a diagnosis pairs it with a model's layer."""
    if len(specs) == 2:
        return _pair_candidates(specs, reversed_inputs, is_last)
    if len(specs) > 2:
        raise UnsupportedFeatureError(
            f"{', '.join(spec.name for spec in specs)} read the same sequence; a Keras layer "
            "has at most two directions (a Bidirectional layer's forward and backward nodes)"
        )
    (spec,) = specs
    _layer_options(spec)  # what no Keras layer computes is named before the weights' bias
    weights = tuple(_direction_weights(spec, d) for d in range(spec.directions))
    if spec.directions == 2:
        return _layers(spec, weights, "bidirectional", is_last)
    directions = _directions(spec, reversed_inputs[0])
    return [layer for d in directions for layer in _layers(spec, weights, d, is_last)]


def _directions(spec: RecurrentNodeSpec, reversed_input: bool) -> list[str]:
    """Keras directions of a single-direction node: a forward node fed a reversed sequence
    (tf2onnx's ReverseSequence) may be a go_backwards layer."""
    if spec.direction == "reverse":
        return ["backward"]
    return ["forward", "backward"] if reversed_input else ["forward"]


def _pair_candidates(
    specs: list[RecurrentNodeSpec], reversed_inputs: list[bool], is_last: bool
) -> list[RecurrentLayer]:
    """Two single-direction nodes on the same sequence as one Bidirectional layer."""
    first, second = specs
    if any(spec.directions != 1 for spec in specs) or (
        (first.cell, first.input_size, first.hidden_size, _layer_options(first))
        != (second.cell, second.input_size, second.hidden_size, _layer_options(second))
    ):
        raise UnsupportedFeatureError(
            f"{first.name} and {second.name} read the same sequence but are not the two "
            "directions of one Keras Bidirectional layer (that needs two single-direction "
            "nodes of one cell, size and activations)"
        )
    candidates = []
    for pair in itertools.product(*map(_directions, specs, reversed_inputs)):
        if sorted(pair) != ["backward", "forward"]:
            continue
        ordered = sorted(zip(pair, specs), key=lambda item: item[0] != "forward")
        weights = tuple(_direction_weights(spec, 0) for _, spec in ordered)
        candidates.extend(_layers(first, weights, "bidirectional", is_last))
    return candidates


def _layers(
    spec: RecurrentNodeSpec,
    weights: tuple[DirectionWeights, ...],
    direction: str,
    is_last: bool,
) -> list[RecurrentLayer]:
    activation, recurrent_activation = _layer_options(spec)
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


def _candidate_stacks(
    groups: list[list[RecurrentNodeSpec]], reversed_inputs: list[list[bool]], ranks: list[int]
) -> list[RecurrentStack]:
    options = [
        layer_candidates(group, flags, i == len(groups) - 1)
        for i, (group, flags) in enumerate(zip(groups, reversed_inputs))
    ]
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
    loops = loop_refusal(proto.graph)
    if loops is not None:
        raise UnsupportedFeatureError(loops)
    constants = constant_values(proto)
    nodes, indices = list(proto.graph.node), layer_groups(proto.graph)
    groups = [[read_recurrent_node(nodes[i], constants) for i in group] for group in indices]
    reversed_inputs = [[reads_reversed(proto.graph, i) for i in group] for group in indices]
    specs = [spec for group in groups for spec in group]
    if not specs:
        operators = sorted({node.op_type for node in proto.graph.node})
        raise UnsupportedFeatureError(
            "the graph has no LSTM, GRU or RNN node (its operators: "
            f"{', '.join(operators) or 'none'}); only graphs of recurrent nodes convert"
            + _INT8_HINT
            * ("DynamicQuantizeLSTM" in operators)
        )
    module = onnx_module(proto, dtype=torch.float64)
    probed = probe_graph(proto, module, specs[0].input_size)
    ranks = [o.ndim for _, outputs in probed.values() for o in outputs]
    closest = (np.inf, "")
    tried = 0
    states = len(next(iter(probed.values()))[0].states)
    for stack in _candidate_stacks(groups, reversed_inputs, ranks):
        if states and states != initial_state_count(stack):
            continue
        tried += 1
        for layout, (probe, actual) in probed.items():
            expected = run_probe(stack, probe)
            error = _mismatch(expected, actual)
            if error <= _FLOAT32_MATCH * max(1.0, _scale(expected)):
                return stack
            closest = min(closest, (error, f"{_describe_stack(stack)} read {layout}"))
    raise UnsupportedFeatureError(_no_match(specs, tried, probed, closest))


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
    probed: dict[str, tuple[Probe, list[np.ndarray]]],
    closest: tuple[float, str],
) -> str:
    """What was tried and why nothing matched, for the refusal of a graph."""
    nodes = ", ".join(f"{spec.name} ({spec.cell}, {spec.direction})" for spec in specs)
    inputs = " and ".join(
        f"a {probe.x.shape} input read {layout}" for layout, (probe, _) in probed.items()
    )
    head = (
        f"the graph's outputs match none of the {tried} Keras layers or stacks built from its "
        f"recurrent nodes {nodes} (every merge mode, return_sequences and return_state), each "
        f"compared with the graph run on {inputs}"
    )
    if np.isfinite(closest[0]):
        return (
            f"{head}; the closest, {closest[1]}, is off by {closest[0]:.3g}. onnx_to_torch "
            "runs the graph as it is"
        )
    shapes = "; ".join(
        f"{layout}: {', '.join(str(a.shape) for a in arrays)}"
        for layout, (_, arrays) in probed.items()
    )
    advice = "Run the graph as it is with onnx_to_torch."
    if any(a.ndim == 4 for _, arrays in probed.values() for a in arrays):
        advice = (
            "A 4-D output is a recurrent node's raw Y (time, directions, batch, hidden), which "
            "no Keras layer returns: add the Transpose/Reshape that torch.onnx.export or "
            "to_onnx write after the node, or run the graph as it is with onnx_to_torch."
        )
    return (
        f"{head}; none had the graph's output shapes ({shapes}), where a Keras layer returns "
        f"(batch, time, features) or (batch, features), then (batch, units) states. {advice}"
    )


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
