"""Reading ONNX graphs: node attributes, constant tensors, and checked recurrent nodes.

:func:`read_recurrent_node` reads an ``LSTM``/``GRU``/``RNN`` node attribute by attribute into
a :class:`RecurrentNodeSpec`, with onnxruntime's reading of the ``activation_alpha`` and
``activation_beta`` lists; an attribute it does not know is refused, never ignored.

onnx is imported inside the functions, so importing this module imports no framework.
"""

from __future__ import annotations

import dataclasses
import re
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


def naming_node(torch: Any, node: Any) -> Any:
    """The context in which a capture of the operations run names ``node`` as their source
    (``torch.fx.traceback.annotate``; :func:`~xframe_bilstm.models.capture_walk.source_line`
    reads it)."""
    return torch.fx.traceback.annotate({"source": describe_node(node)})


def layer_name(name: str) -> str:
    """A graph name (a node's, an input's) as a layer's: runs of what Keras does not take in
    a name made one ``_``, none at the ends.

    Example:
        >>> layer_name("/encoder/lstm/LSTM_1"), layer_name("onnx::Gather_0"), layer_name("ids")
        ('encoder_lstm_LSTM_1', 'onnx_Gather_0', 'ids')
    """
    return re.sub(r"[^0-9A-Za-z_-]+", "_", name).strip("_") or "layer"


def declared_dims(value: Any) -> list[int | None]:
    """A graph input's or output's declared dimensions: a fixed size, or None when dynamic."""
    return [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
        for d in value.type.tensor_type.shape.dim
    ]


def default_opset(model: Any) -> int:
    """The default-domain opset a model imports (1 where it names none)."""
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def data_inputs(proto: Any) -> list[Any]:
    """The graph's inputs that are fed, in order: not initializers (an initializer listed as
    an input is a default)."""
    initializers = {i.name for i in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in initializers]


def has_recurrent_nodes(proto: Any) -> bool:
    """Whether the graph (not its subgraphs) holds an LSTM, GRU or RNN node."""
    return any(node.op_type in CELL_BY_OP for node in proto.graph.node)


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
    return graph_constant_values(model.graph)


def graph_constant_values(
    graph: Any, outer: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """:func:`constant_values` of one graph or subgraph, which also sees the constants of the
    graphs around it (``outer``), as ONNX scoping lets a subgraph read them."""
    onnx = require("onnx")
    values = dict(outer or {})
    values.update({init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer})
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
class RecurrentOptions:
    """One ONNX LSTM/GRU/RNN node's attributes, read and checked (its weights aside).

    ``activations`` holds, per direction, ``(ONNX name, alpha, beta)`` for each activation
    slot (LSTM f, g, h; GRU f, g; RNN f), with onnxruntime's reading of the alpha and beta
    lists already applied.
    """

    node: Any
    cell: str
    directions: int
    direction: str
    hidden_size: int
    layout: int
    activations: tuple[tuple[tuple[str, float, float], ...], ...]
    clip: float | None
    input_forget: bool
    linear_before_reset: bool

    @property
    def name(self) -> str:
        return describe_node(self.node)

    @property
    def gates(self) -> int:
        return len(CANONICAL_ORDER[self.cell])


@dataclass(frozen=True)
class RecurrentNodeSpec(RecurrentOptions):
    """One ONNX LSTM/GRU/RNN node, read and checked: weights in ONNX layout, float32 or wider."""

    input_size: int
    w: np.ndarray  # (dirs, G·H, D), ONNX gate order
    r: np.ndarray  # (dirs, G·H, H)
    b: np.ndarray | None  # (dirs, 2·G·H) = [Wb, Rb]
    p: np.ndarray | None  # (dirs, 3H) peepholes i, o, f (LSTM only)


# The weight inputs of a recurrent node by position: the node's inputs are X, W, R, B,
# sequence_lens, initial_h, initial_c, P.
WEIGHT_SLOTS = {1: "W", 2: "R", 3: "B", 7: "P"}

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


def read_recurrent_options(node: Any) -> RecurrentOptions:
    """Read an LSTM/GRU/RNN node's attributes, checking every one.

    Raises:
        UnsupportedFeatureError: unknown attributes or activations, alpha/beta lists that do
            not fit the activations.
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
    layout = int(attributes.get("layout", 0))
    if layout not in (0, 1):
        raise UnsupportedFeatureError(f"{describe_node(node)}: layout={layout}")
    clip = attributes.get("clip")
    return RecurrentOptions(
        node=node,
        cell=cell,
        directions=directions,
        direction=direction,
        hidden_size=int(attributes["hidden_size"]),
        layout=layout,
        activations=_read_activations(node, cell, directions, attributes),
        clip=None if clip is None else float(clip),
        input_forget=bool(attributes.get("input_forget", 0)),
        linear_before_reset=bool(attributes.get("linear_before_reset", 0)),
    )


def weight_shapes(options: RecurrentOptions, input_size: int) -> dict[str, tuple[int, ...]]:
    """The shapes ONNX gives the weight inputs W, R, B and P of a node with these options.

    Example:
        >>> import onnx
        >>> node = onnx.helper.make_node("GRU", ["x", "w", "r"], ["y"], hidden_size=2)
        >>> weight_shapes(read_recurrent_options(node), 5)
        {'W': (1, 6, 5), 'R': (1, 6, 2), 'B': (1, 12), 'P': (1, 6)}
    """
    dirs, hidden, gates = options.directions, options.hidden_size, options.gates
    return {
        "W": (dirs, gates * hidden, input_size),
        "R": (dirs, gates * hidden, hidden),
        "B": (dirs, 2 * gates * hidden),
        "P": (dirs, 3 * hidden),
    }


def runtime_weight_inputs(node: Any, constants: dict[str, np.ndarray]) -> dict[int, str]:
    """The weight inputs of a recurrent node (W, R, B, P by position) that are no constants,
    so computed at run time or given as graph inputs."""
    inputs = list(node.input)
    return {
        slot: inputs[slot]
        for slot in WEIGHT_SLOTS
        if slot < len(inputs) and inputs[slot] and inputs[slot] not in constants
    }


def read_recurrent_node(node: Any, constants: dict[str, np.ndarray]) -> RecurrentNodeSpec:
    """Read an LSTM/GRU/RNN node's attributes and constant weights, checking every one.

    Raises:
        UnsupportedFeatureError: weights that are not constants, unknown attributes or
            activations, alpha/beta lists that do not fit the activations.
        WeightShapeError: weights whose shapes do not fit ``hidden_size``.
    """
    options = read_recurrent_options(node)
    runtime = runtime_weight_inputs(node, constants)
    if runtime:
        named = ", ".join(f"{WEIGHT_SLOTS[slot]} ({name!r})" for slot, name in runtime.items())
        raise UnsupportedFeatureError(
            f"{describe_node(node)}: its weight inputs {named} are graph inputs or computed at "
            "run time, not constants; a Keras layer or canonical stack is built from constant "
            "weights (initializers or Constant nodes). onnx_to_torch runs the graph as it is, "
            "taking those weights as inputs of forward"
        )
    inputs = list(node.input) + [""] * 8

    def constant(index: int) -> np.ndarray | None:
        return None if inputs[index] == "" else np.asarray(constants[inputs[index]])

    w, r = constant(1), constant(2)
    if w is None or r is None:
        raise UnsupportedFeatureError(f"{describe_node(node)}: W and R are required")
    b = constant(3)
    p = constant(7) if options.cell == "lstm" else None
    input_size = int(w.shape[-1])
    expected = weight_shapes(options, input_size)
    for name, array in {"W": w, "R": r, "B": b, "P": p}.items():
        if array is not None and array.shape != expected[name]:
            raise WeightShapeError(
                f"{describe_node(node)}: input {name} expected shape {expected[name]} "
                f"(hidden_size={options.hidden_size}, {options.directions} direction(s)), got "
                f"{array.shape}"
            )
    fields = {f.name: getattr(options, f.name) for f in dataclasses.fields(RecurrentOptions)}
    return RecurrentNodeSpec(**fields, input_size=input_size, w=w, r=r, b=b, p=p)


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
