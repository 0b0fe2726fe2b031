"""Reading ONNX graphs: node attributes, constant tensors, and checked recurrent nodes.

:func:`read_recurrent_node` reads an ``LSTM``/``GRU``/``RNN`` node attribute by attribute into
a :class:`RecurrentNodeSpec`, with onnxruntime's reading of the ``activation_alpha`` and
``activation_beta`` lists; an attribute it does not know is refused, never ignored.

onnx is imported inside the functions, so importing this module imports no framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._imports import require
from ...errors import UnsupportedFeatureError, WeightShapeError
from ...gates import CANONICAL_ORDER
from .vocabulary import CELL_BY_OP, DEFAULT_ACTIVATIONS, DEFAULT_ALPHA_BETA, READS_ALPHA_BETA


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


def recurrent_in_subgraphs(graph: Any) -> list[str]:
    """Where recurrent nodes sit inside the subgraphs of control flow (``If``, ``Loop``,
    ``Scan``): :func:`recurrent_in_node` of each node of ``graph`` that holds some."""
    return [text for node in graph.node if (text := recurrent_in_node(node)) is not None]


def recurrent_in_node(node: Any) -> str | None:
    """The recurrent nodes in the subgraphs of ``node``, at any depth, or None; e.g.
    ``'If node "branch" (then_branch: LSTM node "lstm"; else_branch: LSTM node "lstm_1")'``.
    """
    places = []
    for attribute in node.attribute:
        subgraphs = ([attribute.g] if attribute.g.node else []) + list(attribute.graphs)
        held = [text for subgraph in subgraphs for text in _recurrent_nodes(subgraph)]
        if held:
            places.append(f"{attribute.name}: {', '.join(held)}")
    return f"{describe_node(node)} ({'; '.join(places)})" if places else None


def _recurrent_nodes(graph: Any) -> list[str]:
    """The recurrent nodes of ``graph`` and of its subgraphs, at any depth."""
    held = []
    for node in graph.node:
        if node.op_type in CELL_BY_OP:
            held.append(describe_node(node))
        inner = recurrent_in_node(node)
        if inner is not None:
            held.append(inner)
    return held


def constant_values(model: Any) -> dict[str, np.ndarray]:
    """Every tensor whose value the graph fixes: initializers, Constant nodes, their Identity."""
    onnx = require("onnx")
    graph = model.graph
    values = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = constant_node_value(onnx, node)
        elif node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def constant_node_value(onnx: Any, node: Any) -> np.ndarray:
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
    cell = CELL_BY_OP[node.op_type]
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
    slots = DEFAULT_ACTIVATIONS[cell]
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
        canonical_name = next((k for k in READS_ALPHA_BETA if k.lower() == name.lower()), None)
        if canonical_name is None:
            raise UnsupportedFeatureError(
                f"{describe_node(node)}: activation {name!r} is not an ONNX recurrent "
                f"activation ({', '.join(sorted(READS_ALPHA_BETA))})"
            )
        reads_alpha, reads_beta = READS_ALPHA_BETA[canonical_name]
        default_alpha, default_beta = DEFAULT_ALPHA_BETA.get(canonical_name, (None, None))
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
