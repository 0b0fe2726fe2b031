"""One run's gradients, by the names the library gives weights, with each native name beside.

Every framework that differentiates returns a :class:`GradientArrays`: the gradients with
respect to the input, the initial states (when given) and every weight, keyed by canonical
name (``inputs``, ``initial_states[0]``, ``layers[0].forward.kernel``, ``.recurrent_kernel``,
``.bias``), in canonical orientation and gate order. A split bias (two rows, as PyTorch keeps
``bias_ih`` and ``bias_hh``) stays (2, G·H); ``native`` names what each array was in the
framework (two names for a split bias, one per row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .canonical import RecurrentStack
from .graph import ModelGraph

WEIGHT_FIELDS = ("kernel", "recurrent_kernel", "bias")


@dataclass(frozen=True)
class GradientArrays:
    """Gradients by canonical name, and the native name(s) of each where there are some."""

    arrays: dict[str, np.ndarray]
    native: dict[str, tuple[str, ...]] = field(default_factory=dict)


def weight_arrays(stack: RecurrentStack) -> dict[str, np.ndarray]:
    """A stack's weights by canonical name; a one-direction layer's are ``forward``.

    Example:
        >>> from xframe_bilstm import DirectionWeights, RecurrentLayer
        >>> w = DirectionWeights(np.zeros((3, 2)), np.zeros((2, 2)), np.zeros(2))
        >>> layer = RecurrentLayer("simple_rnn", 3, 2, (w,), "backward",
        ...                        recurrent_activation=None)
        >>> list(weight_arrays(RecurrentStack((layer,))))
        ['layers[0].forward.kernel', 'layers[0].forward.recurrent_kernel', 'layers[0].forward.bias']
    """
    named = {}
    for index, layer in enumerate(stack.layers):
        for side, weights in zip(("forward", "backward"), layer.weights):
            for name in WEIGHT_FIELDS:
                value = getattr(weights, name)
                if value is not None:
                    named[f"layers[{index}].{side}.{name}"] = np.asarray(value)
    return named


def gradient_arrays(
    inputs: np.ndarray,
    states: Sequence[np.ndarray] | None,
    weights: dict[str, np.ndarray],
    native: dict[str, tuple[str, ...]] | None = None,
) -> GradientArrays:
    """The named gradients of one run, as float64 arrays (``states`` None: none given)."""
    arrays = {"inputs": np.asarray(inputs, np.float64)}
    for index, state in enumerate(states or ()):
        arrays[f"initial_states[{index}]"] = np.asarray(state, np.float64)
    arrays.update({name: np.asarray(value, np.float64) for name, value in weights.items()})
    return GradientArrays(arrays, dict(native or {}))


def native_names(
    markers: RecurrentStack, parameters: Sequence[str], prefix: str
) -> dict[str, tuple[str, ...]]:
    """Which native parameter each canonical weight was read from.

    ``markers`` is the framework's model read back after its parameter ``i`` was filled with
    the value ``i + 1``: each canonical array (each row of a split bias) then holds the
    number of the parameter it came from, whatever the reading reordered or transposed.
    """
    return marker_names(weight_arrays(markers), parameters, prefix)


def input_label(index: int, count: int) -> str:
    """The name of a model input's gradient: ``inputs``, or ``inputs[i]`` among several.

    Example:
        >>> input_label(0, 1), input_label(1, 2)
        ('inputs', 'inputs[1]')
    """
    return "inputs" if count == 1 else f"inputs[{index}]"


def graph_weight_arrays(graph: ModelGraph) -> dict[str, np.ndarray]:
    """A model graph's weights as its gradients are named: ``<layer>/<weight>``, and a
    recurrent layer's ``<layer>/<side>.<field>`` (``bilstm/backward.recurrent_kernel``).

    Example:
        >>> from xframe_bilstm.graph import LayerRecord
        >>> graph = ModelGraph("m", (
        ...     LayerRecord("x", "input", "InputLayer", options={"shape": (2,), "dtype": "f"}),
        ...     LayerRecord("d", "dense", "Dense", ("x",),
        ...                 {"activation": "linear", "time_distributed": False},
        ...                 {"kernel": np.zeros((2, 1)), "bias": np.zeros(1)})),
        ...     inputs=("x",), outputs=("d",))
        >>> list(graph_weight_arrays(graph))
        ['d/kernel', 'd/bias']
    """
    named: dict[str, np.ndarray] = {}
    for record in graph.layers:
        if record.shares:
            continue  # the weights of the layer it calls again
        if record.recurrent is not None:
            for side, weights in zip(("forward", "backward"), record.recurrent.weights):
                for field_name in WEIGHT_FIELDS:
                    value = getattr(weights, field_name)
                    if value is not None:
                        named[f"{record.name}/{side}.{field_name}"] = np.asarray(value)
            continue
        inner = record.options["layer"] if record.kind == "time_distributed" else record
        named.update({f"{record.name}/{k}": np.asarray(v) for k, v in inner.weights.items()})
    return named


def marker_names(
    markers: dict[str, np.ndarray], parameters: Sequence[str], prefix: str
) -> dict[str, tuple[str, ...]]:
    """Which native parameter each named weight holds the number of (see
    :func:`native_names`)."""
    named: dict[str, tuple[str, ...]] = {}
    for name, array in markers.items():
        rows = array if name.endswith(".bias") and array.ndim == 2 else array[None]
        found = []
        for row in rows:
            index = round(float(np.asarray(row, np.float64).flat[0])) - 1
            if 0 <= index < len(parameters):
                found.append(f"{prefix} {parameters[index]}")
        if found:
            named[name] = tuple(found)
    return named


def reference_arrays(
    reading: Any,
    x: Any,
    cotangents: Sequence[np.ndarray],
    *,
    dtype: type = np.float64,
    initial_states: Sequence[np.ndarray] | None = None,
    lengths: np.ndarray | None = None,
    zero_states: bool = False,
) -> GradientArrays:
    """The reference gradients of a stack or a whole model, run as its graph and named as
    every run names them: the float inputs ``inputs`` (``inputs[i]`` among several), the
    initial states ``initial_states[i]`` (when given, or with ``zero_states`` the zeros the
    recurrent layers start from), the weights as the graph's backward names them (a stack's
    ``layers[0].forward.kernel``, a model's ``<layer>/<weight>``)."""
    from .inputs import as_list
    from .reference.graph_backward import graph_gradients
    from .stack_graph import as_graph

    inputs = as_list(x)
    grads = graph_gradients(
        as_graph(reading),
        inputs,
        cotangents,
        initial_states=initial_states,
        lengths=lengths,
        dtype=dtype,
    )
    arrays = {
        input_label(index, len(inputs)): g
        for index, g in enumerate(grads.inputs.values())
        if g is not None
    }
    if initial_states is not None or zero_states:
        arrays.update({f"initial_states[{i}]": g for i, g in enumerate(grads.initial_states)})
    arrays.update(grads.weights)
    return GradientArrays({k: np.asarray(v, np.float64) for k, v in arrays.items()})


__all__ = [
    "GradientArrays",
    "gradient_arrays",
    "graph_weight_arrays",
    "input_label",
    "marker_names",
    "native_names",
    "reference_arrays",
    "weight_arrays",
]
