"""What of an ONNX graph the interpreter runs, surveyed whole, so that one refusal names it all.

:func:`survey` walks the graph and the branches of its ``If`` nodes and sorts every node:
operators outside the supported set (with their counts and node names), recurrent nodes read
(how they were understood) or refused (why), and recurrent nodes inside ``Loop``/``Scan``
bodies, which are not run. :func:`refuse_unsupported` raises one
:class:`~xframe_bilstm.errors.UnsupportedFeatureError` listing all of it. The supported set is
the interpreter's own dispatch, passed in, so operators added there count here.

onnx is imported inside the functions (by :mod:`.nodes`), so importing this module imports no
framework.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import UnsupportedFeatureError, WeightShapeError
from .nodes import (
    graph_constant_values,
    read_recurrent_node,
    read_recurrent_options,
    recurrent_in_node,
    runtime_weight_inputs,
)
from .vocabulary import CELL_BY_OP

# Control flow the interpreter runs: If, its branches as submodules.
CONTROL_FLOW = frozenset({"If"})
# Node names shown per operator before "and N more".
NAMES_SHOWN = 3
_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass
class Survey:
    """A graph's nodes sorted by what the interpreter makes of them.

    ``unsupported`` maps each operator outside the supported set (``domain.op`` outside the
    default domain) to the names of its nodes, in graph order; ``understood`` describes the
    recurrent nodes read; ``refused`` the recurrent nodes that could not be, with why;
    ``in_loops`` the ``Loop``/``Scan`` nodes that hold recurrent nodes.
    """

    unsupported: dict[str, list[str]] = field(default_factory=dict)
    understood: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    in_loops: list[str] = field(default_factory=list)


def survey(
    graph: Any,
    supported: Collection[str],
    outer: dict[str, np.ndarray] | None = None,
    prefix: str = "",
) -> Survey:
    """Sort every node of ``graph`` (and of its ``If`` branches) by what the interpreter
    makes of it.

    Args:
        graph: an ONNX GraphProto.
        supported: the default-domain operators the interpreter runs besides LSTM, GRU, RNN
            and :data:`CONTROL_FLOW`.
        outer: constants of the graphs around ``graph``.
        prefix: path of ``graph`` inside the top graph, for node names.

    Example:
        >>> import onnx
        >>> nodes = [onnx.helper.make_node("MatMul", ["x", "w"], ["y"], name=f"m{k}")
        ...          for k in range(5)]
        >>> graph = onnx.helper.make_graph(nodes, "g", [], [])
        >>> survey(graph, {"Add"}).unsupported
        {'MatMul': ['m0', 'm1', 'm2', 'm3', 'm4']}
    """
    found = Survey()
    constants = graph_constant_values(graph, outer)
    for node in graph.node:
        name = prefix + (node.name or (node.output[0] if node.output else "?"))
        if node.domain not in _DEFAULT_DOMAINS:
            if f"{node.domain}.{node.op_type}" in supported:
                continue
            found.unsupported.setdefault(f"{node.domain}.{node.op_type}", []).append(name)
        elif node.op_type in CELL_BY_OP:
            _read(node, constants, name, found)
        elif node.op_type in CONTROL_FLOW:
            branches = {a.name: a.g for a in node.attribute}
            for branch in ("then_branch", "else_branch"):
                if branch in branches:
                    inner = survey(branches[branch], supported, constants, f"{name}/{branch}/")
                    _merge(found, inner)
        elif node.op_type not in supported:
            found.unsupported.setdefault(node.op_type, []).append(name)
            nested = recurrent_in_node(node)
            if nested is not None:
                found.in_loops.append(nested)
    return found


def _read(node: Any, constants: dict[str, np.ndarray], name: str, found: Survey) -> None:
    """Read one recurrent node into ``found``: understood, or refused with why."""
    try:
        runtime = runtime_weight_inputs(node, constants)
        if runtime:
            options = read_recurrent_options(node)
            weights = f", weights {', '.join(runtime.values())} given at run time"
        else:
            options = read_recurrent_node(node, constants)
            weights = ""
    except (UnsupportedFeatureError, WeightShapeError) as error:
        found.refused.append(f"{name!r}: {error}")
        return
    found.understood.append(
        f"{node.op_type} {name!r} ({options.direction}, hidden_size={options.hidden_size}{weights})"
    )


def _merge(into: Survey, inner: Survey) -> None:
    for op, names in inner.unsupported.items():
        into.unsupported.setdefault(op, []).extend(names)
    into.understood.extend(inner.understood)
    into.refused.extend(inner.refused)
    into.in_loops.extend(inner.in_loops)


def refuse_unsupported(graph: Any, supported: Collection[str]) -> None:
    """Raise one error naming everything of ``graph`` the interpreter cannot run, if any.

    Raises:
        UnsupportedFeatureError: every operator outside the supported set with its count and
            node names, every recurrent node that could not be read with why, the recurrent
            nodes inside loops, and the recurrent nodes that were understood.

    Example:
        >>> import onnx
        >>> nodes = [onnx.helper.make_node("Pad", ["x"], ["p"], name="pad"),
        ...          onnx.helper.make_node("Conv", ["p", "w"], ["y"], name="conv")]
        >>> refuse_unsupported(onnx.helper.make_graph(nodes, "g", [], []), {"Add"})
        Traceback (most recent call last):
        ...
        xframe_bilstm.errors.UnsupportedFeatureError: onnx_to_torch cannot run 2 nodes of this
        graph: Conv (1 node: 'conv'); Pad (1 node: 'pad'). No LSTM, GRU or RNN node was found.
        The interpreter runs LSTM, GRU, RNN, If and Add
    """
    found = survey(graph, supported)
    if not (found.unsupported or found.refused):
        return
    raise UnsupportedFeatureError(describe_refusal(found, supported))


def describe_refusal(found: Survey, supported: Collection[str]) -> str:
    """The message of :func:`refuse_unsupported`."""
    parts = []
    if found.unsupported:
        count = sum(len(names) for names in found.unsupported.values())
        listed = "; ".join(
            f"{op} ({_count(len(names))}: {_names(names)})"
            for op, names in sorted(found.unsupported.items())
        )
        parts.append(f"onnx_to_torch cannot run {_count(count)} of this graph: {listed}.")
    if found.in_loops:
        parts.append(
            f"Recurrent nodes inside loops, which are not run: {'; '.join(found.in_loops)}; "
            "export the recurrent part outside the loop, as native LSTM/GRU/RNN nodes."
        )
    if found.refused:
        parts.append(f"Recurrent nodes that cannot be read: {'; '.join(found.refused)}.")
    if found.understood:
        parts.append(f"Understood: {'; '.join(found.understood)}.")
    elif not found.refused:
        parts.append("No LSTM, GRU or RNN node was found.")
    operators = ["LSTM", "GRU", "RNN", *sorted(CONTROL_FLOW), *sorted(supported)]
    parts.append(f"The interpreter runs {', '.join(operators[:-1])} and {operators[-1]}")
    return " ".join(parts)


def _count(n: int) -> str:
    return f"{n} node{'s' if n != 1 else ''}"


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:NAMES_SHOWN])
    more = len(names) - NAMES_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown
