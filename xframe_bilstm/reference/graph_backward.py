"""The reference gradient of a model graph: backpropagation through its layers in numpy.

For one cotangent per model output (``g_k`` for output ``y_k``),
:func:`graph_gradients` returns the gradient of ``Σ_k Σ g_k ⊙ y_k`` with respect to every
float model input and every weight: the vector-Jacobian product a framework's autodiff
gives. The forward runs layer after layer as :func:`~.graph.run_model_reference` runs it,
keeping each layer's vector-Jacobian product (:mod:`~.layer_backward`; recurrent layers on
the scan's tape, :mod:`~.scan_backward`); the backward then walks the layers in reverse,
adding up the gradient of a tensor several layers read.

A stack runs here as its graph (:func:`~xframe_bilstm.stack_graph.stack_graph`): ``lengths``
mask the inputs marked ``lengths`` and ``initial_states`` start the recurrent layers that
read none from the model, as in the forward; every such layer's initial states get their
gradient (zeros when none were given still get theirs).

Weights are named ``<layer>/<weight>`` (``dense/kernel``, ``dense/bias``,
``embedding/embeddings``); a recurrent layer's by its canonical names
(``bilstm/forward.kernel``, ``bilstm/backward.recurrent_kernel``...), and a stack's graph's
as the library names a stack's weights (``layers[0].forward.kernel``, :func:`weight_name`).
Integer inputs (token ids) have no gradient. A graph with a layer kind that has no backward
here is refused before anything runs, naming its layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UnsupportedFeatureError, WeightShapeError
from ..graph import LayerRecord, ModelGraph, state_count
from ..masks import mask_from_lengths
from ..stack_graph import graph_initial_states, stack_of
from ..time_distributed import check_time_distributed
from .layer_backward import BACKWARD_KINDS, Step, Vjp, layer_step
from .scan_backward import backward_layer, forward_layer
from .shape_layers import Mask

GRAPH_BACKWARD_KINDS = ("input", "recurrent", *BACKWARD_KINDS)
RECURRENT_FIELDS = ("kernel", "recurrent_kernel", "bias")


@dataclass(frozen=True)
class GraphGradients:
    """The gradients of a graph's outputs, weighted by their cotangents.

    Attributes:
        inputs: by model input name, each shaped as the input; None for integer inputs.
        weights: by :func:`weight_name` to its gradient, in the order of the graph's layers.
        outputs: what the graph returned.
        initial_states: with respect to the initial states of every recurrent layer that
            reads none from the model, in the order ``initial_states`` takes them.
    """

    inputs: dict[str, np.ndarray | None]
    weights: dict[str, np.ndarray]
    outputs: tuple[np.ndarray, ...] = field(repr=False)
    initial_states: tuple[np.ndarray, ...] = ()

    def named(self) -> dict[str, np.ndarray]:
        """Every gradient by name: the float inputs, ``initial_states[i]``, the weights."""
        named = {name: g for name, g in self.inputs.items() if g is not None}
        named.update({f"initial_states[{i}]": s for i, s in enumerate(self.initial_states)})
        named.update(self.weights)
        return named


def weight_name(graph: ModelGraph) -> Callable[[str, str], str]:
    """How the gradients of ``graph`` name the weight ``key`` of layer ``layer``:
    ``<layer>/<key>``, a shared layer's by the layer it calls again; in a stack's graph
    (:func:`~xframe_bilstm.stack_graph.stack_of`), whose records are ``layers[i]``,
    ``layers[i].<key>``, the names a stack's weights have everywhere in the library
    (``layers[0].forward.kernel``).

    Example:
        >>> graph = ModelGraph("m", (
        ...     LayerRecord("x", "input", "InputLayer", options={"shape": (2,), "dtype": "f"}),),
        ...     inputs=("x",), outputs=("x",))
        >>> weight_name(graph)("bilstm", "forward.kernel")
        'bilstm/forward.kernel'
    """
    separator = "." if stack_of(graph) is not None else "/"
    shared = {record.name: record.shares for record in graph.layers if record.shares}
    return lambda layer, key: f"{shared.get(layer, layer)}{separator}{key}"


def backward_refusal(graph: ModelGraph) -> str | None:
    """Why the reference cannot differentiate ``graph``, or None when it can.

    Example:
        >>> graph = ModelGraph("m", (
        ...     LayerRecord("x", "input", "InputLayer", options={"shape": (3,), "dtype": "f"}),
        ...     LayerRecord("bn", "layer_norm", "LayerNormalization", ("x",),
        ...                 {"axis": (-1,), "epsilon": 1e-3})), inputs=("x",), outputs=("bn",))
        >>> print(backward_refusal(graph))  # doctest: +ELLIPSIS
        model: no gradient reference for layer 'bn' (LayerNormalization, kind layer_norm); ...
    """
    missing = [record for record in graph.layers if not _differentiable(record)]
    if not missing:
        return None
    named = ", ".join(f"{r.name!r} ({r.class_name}, kind {_kind(r)})" for r in missing)
    return (
        f"{graph.source}: no gradient reference for layer{'s' if len(missing) > 1 else ''} "
        f"{named}; gradients are computed through the kinds {', '.join(GRAPH_BACKWARD_KINDS)}"
        " (TimeDistributed of those); compare the other layers' forward outputs"
    )


def _kind(record: LayerRecord) -> str:
    if record.kind == "time_distributed":
        return f"time_distributed({_kind(record.options['layer'])})"
    return record.kind


def _differentiable(record: LayerRecord) -> bool:
    if record.kind == "time_distributed":
        return _differentiable(record.options["layer"])
    return record.kind in GRAPH_BACKWARD_KINDS


def graph_gradients(
    graph: ModelGraph,
    inputs: Sequence[np.ndarray],
    cotangents: Sequence[np.ndarray],
    *,
    initial_states: Sequence[np.ndarray] | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
    dtype: type = np.float64,
) -> GraphGradients:
    """Backpropagate ``cotangents`` through ``graph`` run on ``inputs``.

    Args:
        graph: the model.
        inputs: one array per model input, as :func:`~.graph.run_model_reference` takes them.
        cotangents: one array per model output, each shaped as it.
        initial_states: as :func:`~.graph.run_model_reference` takes them. Default: zeros.
        lengths: valid steps per batch row, masking the inputs marked ``lengths``.
        dtype: the float type to compute in; float64 is the oracle.

    Raises:
        UnsupportedFeatureError: for a layer kind without a backward (all named).
        WeightShapeError: when the cotangents, states or lengths do not fit.

    Example:
        >>> graph = ModelGraph("m", (
        ...     LayerRecord("x", "input", "InputLayer", options={"shape": (2,), "dtype": "f"}),
        ...     LayerRecord("d", "dense", "Dense", ("x",),
        ...                 {"activation": "linear", "time_distributed": False},
        ...                 {"kernel": np.array([[2.0], [3.0]]), "bias": np.array([0.5])})),
        ...     inputs=("x",), outputs=("d",))
        >>> grads = graph_gradients(graph, [np.array([[1.0, 4.0]])], [np.array([[2.0]])])
        >>> grads.inputs["x"].tolist(), grads.weights["d/kernel"].tolist()
        ([[4.0, 6.0]], [[2.0], [8.0]])
    """
    why = backward_refusal(graph)
    if why is not None:
        raise UnsupportedFeatureError(why)
    values: dict[str, np.ndarray] = {}
    masks: dict[str, Mask] = {}
    for name, array in zip(graph.inputs, inputs, strict=True):
        array = np.asarray(array)
        values[name] = array.astype(dtype) if _is_float(array) else array
        by_lengths = lengths is not None and graph.layer(name).options.get("lengths")
        masks[name] = mask_from_lengths(lengths, *array.shape[:2]) if by_lengths else None
    batch = int(np.shape(inputs[0])[0]) if len(inputs) else 0
    starts = graph_initial_states(graph, initial_states, batch, dtype)
    d_starts: dict[str, list[np.ndarray]] = {}  # filled by the recurrent layers' backward
    tapes: list[tuple[LayerRecord, Vjp]] = []
    for record in graph.layers:
        if record.kind == "input":
            continue
        tensors = [values[name] for name in record.inputs]
        in_masks = [masks[name] for name in record.inputs]
        if record.kind == "recurrent":
            start = starts.get(record.name)
            produced, mask, vjp = _recurrent_step(
                record, tensors, in_masks[0], dtype, start, d_starts
            )
        else:
            y, mask, vjp = layer_step(record, tensors, in_masks, dtype, _time_distributed)
            produced = (y,)  # one output
        for name, value in zip(_outputs_of(record), produced):
            values[name], masks[name] = value, (mask if name == record.name else None)
        tapes.append((record, vjp))
    outputs = tuple(values[name] for name in graph.outputs)
    grads = _seed(graph, outputs, cotangents, dtype)
    named = weight_name(graph)
    weights: dict[str, np.ndarray] = {}
    for record, vjp in reversed(tapes):
        popped = [grads.pop(name, None) for name in _outputs_of(record)]
        if all(g is None for g in popped):
            continue  # nothing read this layer's outputs
        filled = [
            np.zeros_like(values[n]) if g is None else g
            for n, g in zip(_outputs_of(record), popped)
        ]
        d_inputs, d_weights = vjp(filled[0] if len(filled) == 1 else filled)
        for name, d in zip(record.inputs, d_inputs):
            if d is not None:
                grads[name] = grads[name] + d if name in grads else d
        for key, value in d_weights.items():  # a shared layer's: the sum over its calls
            name = named(record.name, key)
            weights[name] = weights[name] + value if name in weights else value
    order = _weight_order(tapes, named)
    ordered = {name: weights[name] for name in order if name in weights}
    found = {
        name: (grads.get(name, np.zeros_like(values[name])) if _is_float(values[name]) else None)
        for name in graph.inputs
    }
    states = tuple(state for layer_states in d_starts.values() for state in layer_states)
    return GraphGradients(found, ordered, outputs, states)


def _is_float(array: np.ndarray) -> bool:
    return bool(np.issubdtype(np.asarray(array).dtype, np.floating))


def _outputs_of(record: LayerRecord) -> tuple[str, ...]:
    return record.outputs  # the layer's own name first


def _seed(
    graph: ModelGraph,
    outputs: tuple[np.ndarray, ...],
    cotangents: Sequence[np.ndarray],
    dtype: type,
) -> dict[str, np.ndarray]:
    """The cotangents by output tensor, added up when one tensor is output twice."""
    given = list(cotangents)
    labels = graph.labels or graph.outputs  # a stack's outputs by their names (``h``...)
    if len(given) != len(outputs):
        raise WeightShapeError(
            f"cotangents: expected {len(outputs)} arrays, one per output of {graph.source} "
            f"({', '.join(labels)}), got {len(given)}"
        )
    grads: dict[str, np.ndarray] = {}
    for name, label, cotangent, output in zip(graph.outputs, labels, given, outputs):
        array: np.ndarray = np.asarray(cotangent, dtype=dtype)
        if array.shape != output.shape:
            raise WeightShapeError(
                f"cotangents ({label}): expected shape {output.shape}, the shape of that "
                f"output, got {array.shape}"
            )
        grads[name] = grads[name] + array if name in grads else array
    return grads


def _weight_order(
    tapes: list[tuple[LayerRecord, Vjp]], named: Callable[[str, str], str]
) -> list[str]:
    names: list[str] = []
    for record, _ in tapes:
        if record.kind == "recurrent":
            assert record.recurrent is not None
            sides = ("forward", "backward")[: len(record.recurrent.weights)]
            names += [named(record.name, f"{s}.{f}") for s in sides for f in RECURRENT_FIELDS]
        elif record.kind == "time_distributed":
            inner: LayerRecord = record.options["layer"]
            names += [named(record.name, key) for key in inner.weights]
        else:
            names += [named(record.name, key) for key in record.weights]
    return names


def _recurrent_step(
    record: LayerRecord,
    tensors: Sequence[np.ndarray],
    mask: Mask,
    dtype: type,
    start: list[np.ndarray] | None,
    d_starts: dict[str, list[np.ndarray]],
) -> tuple[tuple[np.ndarray, ...], Mask, Vjp]:
    """A recurrent layer on the scan's tape: (its outputs, its mask, its backward).

    Its states come from the model's tensors, else from ``start`` (the run's initial
    states) or zeros; then its backward puts their gradient in ``d_starts``."""
    layer = record.recurrent
    assert layer is not None
    options = record.options
    time_major, sequences = bool(options["time_major"]), bool(options["return_sequences"])
    x = np.swapaxes(tensors[0], 0, 1) if time_major else tensors[0]
    given: list[np.ndarray] = [np.asarray(s, dtype) for s in tensors[1:]]
    states = (
        given
        or start
        or [np.zeros((x.shape[0], layer.units), dtype) for _ in range(state_count(layer))]
    )
    if not given:  # zeros until (unless) something read the layer's outputs
        d_starts[record.name] = [np.zeros_like(s) for s in states]
    outputs, finals, tape = forward_layer(
        layer, x.astype(dtype), states, mask, return_sequences=sequences, dtype=dtype
    )
    swap = time_major and sequences
    ys = tuple(np.swapaxes(y, 0, 1) for y in outputs) if swap else outputs
    returned = (*ys, *finals) if options.get("return_state") else ys

    def vjp(g: Any) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        parts = list(g) if isinstance(g, list) else [g]
        d_ys = [np.swapaxes(d, 0, 1) if swap else d for d in parts[: len(outputs)]]
        d_finals = parts[len(outputs) :] or [np.zeros_like(f) for f in finals]
        d_x, d_states, directions = backward_layer(layer, tape, d_ys, d_finals)
        d_x = np.swapaxes(d_x, 0, 1) if time_major else d_x
        weights = {
            f"{side}.{name}": getattr(grads, name)
            for side, grads in zip(("forward", "backward"), directions)
            for name in RECURRENT_FIELDS
            if getattr(grads, name) is not None
        }
        if not given:
            d_starts[record.name] = d_states
        return [d_x, *(d_states if given else [])], weights

    return returned, (mask if sequences else None), vjp


def _time_distributed(record: LayerRecord, x: np.ndarray, mask: Mask, dtype: type) -> Step:
    """A wrapped layer run on every step at once, the steps merged into the batch."""
    check_time_distributed(record, mask is not None)
    merged = x.reshape((x.shape[0] * x.shape[1], *x.shape[2:]))
    inner: LayerRecord = record.options["layer"]
    y, _, inner_vjp = layer_step(inner, [merged], [None], dtype, _time_distributed)
    y = y.reshape((x.shape[0], x.shape[1], *y.shape[1:]))

    def vjp(g: np.ndarray) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        flat = g.reshape((g.shape[0] * g.shape[1], *g.shape[2:]))
        (d_x,), weights = inner_vjp(flat)
        return [None if d_x is None else d_x.reshape(x.shape)], weights

    return y, mask, vjp


__all__ = [
    "GRAPH_BACKWARD_KINDS",
    "GraphGradients",
    "backward_refusal",
    "graph_gradients",
    "weight_name",
]
