"""Activations exporters write out with several operators, found to run as one.

- GELU with ``Erf``, as exporters write it before opset 20's ``Gelu``: torch.onnx writes
  ``F.gelu(x)`` as ``Mul(Mul(x, Add(Erf(Div(x, 1.4142135)), 1)), 0.5)``; others multiply
  by 0.70710677 instead of dividing, or take the half first.
- torch's ``F.softplus(x)``, which is ``x`` above 20: torch.onnx's dynamo exporter writes
  ``Where(Greater(x, 20), x, Softplus(x))``.

Found in any of those orders, where each inner value is read by the pattern alone, the
whole computes that activation: the interpreter runs it as one torch function
(``F.gelu``, ``F.softplus``), which a capture reads as the activation it is. Imports no
framework.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

_SQRT2 = math.sqrt(2.0)


Found = dict[str, tuple[str, str]]  # last output -> (activation, the tensor it reads)


@dataclass(frozen=True)
class _Graph:
    """A graph with what the patterns look up: constants, producers, readers' counts."""

    graph: Any
    constants: dict[str, np.ndarray]
    producers: dict[str, Any]
    readers: Counter

    def reader(self, name: str) -> Any:
        """The one node that reads ``name``, or None (several, or a graph output)."""
        if self.readers[name] != 1:
            return None
        return next((node for node in self.graph.node if name in node.input), None)


def activation_patterns(graph: Any, constants: dict[str, np.ndarray]) -> tuple[Found, set[str]]:
    """Each pattern's last output -> its activation ("gelu", "softplus") and the tensor it
    reads, and the outputs of the patterns' inner nodes."""
    readers = Counter(name for node in graph.node for name in node.input)
    readers.update(o.name for o in graph.output)
    producers = {out: node for node in graph.node for out in node.output}
    view = _Graph(graph, constants, producers, readers)
    found: Found = {}
    inner: set[str] = set()
    _gelus(view, found, inner)
    _softplus(view, found, inner)
    return found, inner


def _softplus(view: _Graph, found: Found, inner: set[str]) -> None:
    """``Where(Greater(x, 20), x, Softplus(x))``: torch's softplus."""
    for where in (node for node in view.graph.node if node.op_type == "Where"):
        condition, x, otherwise = where.input
        greater, softplus = view.producers.get(condition), view.producers.get(otherwise)
        if greater is None or softplus is None or greater.op_type != "Greater":
            continue
        if softplus.op_type != "Softplus" or list(softplus.input) != [x]:
            continue
        if greater.input[0] != x or not _is(view.constants, greater.input[1], 20.0):
            continue
        if view.readers[condition] == 1 and view.readers[otherwise] == 1:
            found[where.output[0]] = ("softplus", x)
            inner |= {condition, otherwise}


def _gelus(view: _Graph, found: Found, inner: set[str]) -> None:
    """``x * 0.5 * (1 + erf(x / sqrt(2)))`` in the orders above: GELU."""
    for erf in (node for node in view.graph.node if node.op_type == "Erf"):
        x = _scaled_input(view.producers.get(erf.input[0]), view.constants)
        one = view.reader(erf.output[0])
        if x is None or one is None or not _adds_one(one, erf.output[0], view.constants):
            continue
        chain = _product_with(view, one.output[0], x)
        if chain is not None:
            last, nodes = chain
            found[last] = ("gelu", x)
            inner |= {erf.input[0], erf.output[0], one.output[0]} | nodes


def _scaled_input(node: Any, constants: dict[str, np.ndarray]) -> str | None:
    """``x`` of ``x / sqrt(2)`` or ``x * (1 / sqrt(2))``, else None."""
    if node is None or node.op_type not in ("Div", "Mul") or len(node.input) != 2:
        return None
    x, scale = node.input
    if node.op_type == "Mul" and _is(constants, x, 1 / _SQRT2):
        x, scale = scale, x
    wanted = _SQRT2 if node.op_type == "Div" else 1 / _SQRT2
    return x if _is(constants, scale, wanted) else None


def _adds_one(node: Any, erf: str, constants: dict[str, np.ndarray]) -> bool:
    others = [name for name in node.input if name != erf]
    return node.op_type == "Add" and len(others) == 1 and _is(constants, others[0], 1.0)


def _product_with(view: _Graph, value: str, x: str) -> tuple[str, set[str]] | None:
    """The last output of ``value * x * 0.5`` in any order of two Muls, and the outputs of
    the nodes before it, or None."""
    needed = Counter({"x": 1, "half": 1})
    inner: set[str] = set()
    for _ in range(2):
        node = view.reader(value)
        if node is None or node.op_type != "Mul":
            return None
        (other,) = [name for name in node.input if name != value] or [None]
        for leaf in _factors(view, other, x, inner):
            needed[leaf] -= 1
        if any(count < 0 for count in needed.values()):
            return None
        if not +needed:
            return node.output[0], inner
        inner.add(node.output[0])
        value = node.output[0]
    return None


def _factors(view: _Graph, name: Any, x: str, inner: set[str]) -> list[str]:
    """``name`` as factors: "x", "half", both for a ``Mul(x, 0.5)`` read once, else "?"."""
    if name == x:
        return ["x"]
    if _is(view.constants, name, 0.5):
        return ["half"]
    node = view.producers.get(name)
    if node is not None and node.op_type == "Mul" and view.readers[name] == 1:
        leaves = [
            "x" if i == x else "half" if _is(view.constants, i, 0.5) else "?" for i in node.input
        ]
        if sorted(leaves) == ["half", "x"]:
            inner.add(name)
            return leaves
    return ["?"]


def _is(constants: dict[str, np.ndarray], name: Any, value: float) -> bool:
    array = constants.get(name) if isinstance(name, str) else None
    return array is not None and array.size == 1 and bool(np.isclose(float(array), value))
