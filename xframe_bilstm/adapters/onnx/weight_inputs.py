"""Graph inputs that are the weights of recurrent nodes, and seeded values for them.

ONNX's own node test cases give ``W``, ``R``, ``B`` and ``P`` as graph inputs. Such an input
is no sequence or state, so building example inputs (:mod:`.example_inputs`) must know it for
what it is: :func:`graph_weight_inputs` finds them, in the graph and in the branches of its
``If`` nodes, and :func:`seeded_weight` gives one a value of the shape ONNX requires, drawn as
PyTorch initialises recurrent weights (uniform in ±1/√hidden_size). onnx is imported inside
the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import UnsupportedFeatureError
from .nodes import (
    WEIGHT_SLOTS,
    RecurrentOptions,
    graph_constant_values,
    read_recurrent_options,
    runtime_weight_inputs,
    weight_shapes,
)
from .vocabulary import CELL_BY_OP


@dataclass(frozen=True)
class WeightInput:
    """A graph input that is input ``slot`` (``"W"``, ``"R"``, ``"B"`` or ``"P"``) of the
    recurrent node read as ``options``."""

    name: str
    slot: str
    options: RecurrentOptions


def graph_weight_inputs(proto: Any) -> dict[str, WeightInput]:
    """The graph inputs that feed a recurrent node's W, R, B or P, by name.

    Example:
        >>> import onnx
        >>> helper, f = onnx.helper, onnx.TensorProto.FLOAT
        >>> node = helper.make_node("RNN", ["X", "W", "R"], ["Y"], hidden_size=4)
        >>> graph = helper.make_graph([node], "g", [
        ...     helper.make_tensor_value_info(n, f, s)
        ...     for n, s in (("X", [3, 1, 2]), ("W", [1, 4, 2]), ("R", [1, 4, 4]))], [])
        >>> {name: w.slot for name, w in graph_weight_inputs(helper.make_model(graph)).items()}
        {'W': 'W', 'R': 'R'}
    """
    inputs = {i.name for i in proto.graph.input}
    found: dict[str, WeightInput] = {}
    for node, constants in _recurrent_nodes(proto.graph, None):
        for slot, name in runtime_weight_inputs(node, constants).items():
            if name in inputs:
                options = read_recurrent_options(node)
                found.setdefault(name, WeightInput(name, WEIGHT_SLOTS[slot], options))
    return found


def _recurrent_nodes(graph: Any, outer: dict[str, np.ndarray] | None) -> list[tuple[Any, Any]]:
    """Each recurrent node of ``graph`` and of its ``If`` branches, with the constants it sees."""
    constants = graph_constant_values(graph, outer)
    found = []
    for node in graph.node:
        if node.op_type in CELL_BY_OP:
            found.append((node, constants))
        elif node.op_type == "If":
            for attribute in node.attribute:
                if attribute.name in ("then_branch", "else_branch"):
                    found.extend(_recurrent_nodes(attribute.g, constants))
    return found


def seeded_weight(
    rng: np.random.Generator,
    weight: WeightInput,
    declared: tuple[Any, ...],
    input_size: int | None,
    dtype: np.dtype,
) -> np.ndarray:
    """A seeded value for ``weight``, uniform in ±1/√hidden_size, of the shape ONNX requires.

    Args:
        rng: the random generator.
        weight: the weight input.
        declared: its declared dimensions (sizes, or names and None where dynamic).
        input_size: the features of the node's sequence input, where the graph fixes them.
        dtype: numpy dtype of the input.

    Raises:
        UnsupportedFeatureError: a ``W`` whose input size neither it nor the sequence
            input fixes, or a declared size that contradicts the node's ``hidden_size``.
    """
    if input_size is None and len(declared) == 3 and isinstance(declared[2], int):
        input_size = declared[2]
    if input_size is None:
        if weight.slot == "W":
            raise UnsupportedFeatureError(
                f"graph input {weight.name!r} (W of {weight.options.name}): its input size is "
                "dynamic and the sequence input does not fix it; give it a fixed size in the graph"
            )
        input_size = 1  # only W's shape depends on it
    shape = weight_shapes(weight.options, input_size)[weight.slot]
    fixed = [(a, d) for a, d in enumerate(declared) if isinstance(d, int)]
    if len(declared) != len(shape) or any(shape[a] != d for a, d in fixed):
        raise UnsupportedFeatureError(
            f"graph input {weight.name!r} ({weight.slot} of {weight.options.name}) is declared "
            f"{list(declared)}, where the node's hidden_size={weight.options.hidden_size} and "
            f"{weight.options.directions} direction(s) need {list(shape)}"
        )
    bound = 1.0 / np.sqrt(weight.options.hidden_size)
    return rng.uniform(-bound, bound, shape).astype(dtype)
