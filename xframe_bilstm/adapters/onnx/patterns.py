"""How exporters arrange recurrent nodes: which nodes form one Keras layer, which read their
input reversed, and what a ``Loop`` in place of a recurrent node means.

- tf2onnx writes a Keras ``go_backwards=True`` layer as a forward node fed by
  ``ReverseSequence`` (:func:`reads_reversed`), and may write the two halves of a
  ``Bidirectional`` layer as two single-direction nodes joined by ``Concat``, ``Add``, ``Mul``
  or an average (:func:`layer_groups`: the nodes that read the same sequence).
- tf2onnx writes the layers it has no native rewrite for as a ``Loop`` of MatMuls
  (:func:`loop_refusal` names them and says which exports give native nodes).

The graph walk is structural only; what the nodes compute together is still found by
probing (:mod:`.importer`). Importing this module imports no framework.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .nodes import describe_node
from .vocabulary import CELL_BY_OP

# Operators that reverse a sequence along time: ReverseSequence (tf2onnx), Slice with a
# negative step (torch.flip on older opsets, to_onnx's go_backwards).
_REVERSING = frozenset({"ReverseSequence", "Slice"})
# What a recurrent cell computes in a Loop body, shown in the refusal.
_CELL_OPERATORS = frozenset(
    {"Elu", "Gemm", "HardSigmoid", "MatMul", "Relu", "Sigmoid", "Softplus", "Softsign", "Tanh"}
)


def layer_groups(graph: Any) -> list[list[int]]:
    """The recurrent nodes of ``graph`` (indices in graph order) grouped into layers.

    Nodes whose sequence input comes from the same place (the same earlier recurrent nodes,
    or the graph inputs alone) read the same sequence: the two halves of one bidirectional
    layer. Any other node is a layer of its own.

    Example:
        >>> import onnx
        >>> h = onnx.helper
        >>> nodes = [h.make_node("ReverseSequence", ["x", "n"], ["rx"]),
        ...          h.make_node("LSTM", ["x", "W", "R"], ["yf"]),
        ...          h.make_node("LSTM", ["rx", "W", "R"], ["yb"]),
        ...          h.make_node("Concat", ["yf", "yb"], ["y"], axis=-1),
        ...          h.make_node("GRU", ["y", "W2", "R2"], ["z"])]
        >>> layer_groups(h.make_graph(nodes, "g", [], []))
        [[1, 2], [4]]
    """
    nodes = list(graph.node)
    producer = {name: i for i, node in enumerate(nodes) for name in node.output if name}
    groups: dict[frozenset[int], list[int]] = {}
    for index, node in enumerate(nodes):
        if node.op_type in CELL_BY_OP:
            origin = _recurrent_ancestors(nodes, producer, node.input[0])
            groups.setdefault(origin, []).append(index)
    return sorted(groups.values())


def _recurrent_ancestors(nodes: list[Any], producer: dict[str, int], name: str) -> frozenset[int]:
    """The nearest recurrent nodes above tensor ``name`` (through glue, on every input)."""
    found: set[int] = set()
    seen: set[str] = set()
    pending = [name]
    while pending:
        tensor = pending.pop()
        if tensor in seen or tensor not in producer:
            continue
        seen.add(tensor)
        index = producer[tensor]
        if nodes[index].op_type in CELL_BY_OP:
            found.add(index)
        else:
            pending.extend(nodes[index].input)
    return frozenset(found)


def reads_reversed(graph: Any, index: int) -> bool:
    """Whether the sequence input of recurrent node ``index`` passes a reversing operator
    (``ReverseSequence``, or ``Slice`` with a negative step) on its way from the previous
    recurrent node or the graph input; its reading then tries Keras's ``go_backwards``."""
    nodes = list(graph.node)
    producer = {name: i for i, node in enumerate(nodes) for name in node.output if name}
    tensor = nodes[index].input[0]
    while tensor in producer:
        node = nodes[producer[tensor]]
        if node.op_type in CELL_BY_OP or not node.input:
            return False
        if node.op_type in _REVERSING and _reverses(node):
            return True
        tensor = node.input[0]
    return False


def _reverses(node: Any) -> bool:
    if node.op_type == "ReverseSequence":
        return True
    # A Slice's steps are its fifth input (opset 10+), constant or not: a negative one may
    # reverse; the probe decides what the node computes.
    return len(node.input) > 4 and bool(node.input[4])


def loop_refusal(graph: Any) -> str | None:
    """Why a graph whose recurrent layers are ``Loop`` nodes is refused, or None without.

    A ``Loop`` whose body multiplies matrices is read as a recurrent layer run step by
    step, as tf2onnx writes the Keras layers it has no native rewrite for.

    Example:
        >>> import onnx
        >>> h = onnx.helper
        >>> body = h.make_graph([h.make_node("MatMul", ["a", "b"], ["c"])], "body", [], [])
        >>> loop = h.make_node("Loop", ["", "cond"], ["y"], name="gru/while_loop", body=body)
        >>> loop_refusal(h.make_graph([loop], "g", [], []))[:62]
        "Loop node 'gru/while_loop' (its body: MatMul) runs a recurrent"
    """
    loops = [node for node in graph.node if node.op_type == "Loop" and _body_matmuls(node)]
    if not loops:
        return None
    described = "; ".join(
        f"{describe_node(node)} (its body: {_body_operators(node)})" for node in loops
    )
    verb = "runs a recurrent layer" if len(loops) == 1 else "run recurrent layers"
    return (
        f"{described} {verb} step by step as a Loop of MatMuls, which is not converted: "
        "only native LSTM, GRU and RNN nodes are read. tf2onnx (1.17) writes a Loop for "
        "Keras 3 GRU layers, SimpleRNN layers, GRU reset_after=False and masked layers; it "
        "writes native nodes for LSTM layers (go_backwards and Bidirectional included) and, "
        "through tf2onnx.convert.from_keras of a tf_keras (Keras 2) model, for GRU layers "
        "with reset_after=True. xframe_bilstm.to_onnx(model) exports every Keras recurrent "
        "layer, masked ones included, as native nodes"
    )


def _body_matmuls(node: Any) -> bool:
    return any(
        inner.op_type in ("MatMul", "Gemm")
        for attribute in node.attribute
        if attribute.g.node
        for inner in attribute.g.node
    )


def _body_operators(node: Any) -> str:
    """The cell's operators in a Loop body (matrix products and activations), counted."""
    counts = Counter(
        inner.op_type
        for attribute in node.attribute
        if attribute.g.node
        for inner in attribute.g.node
        if inner.op_type in _CELL_OPERATORS
    )
    return ", ".join(f"{op} x{n}" if n > 1 else op for op, n in sorted(counts.items()))
