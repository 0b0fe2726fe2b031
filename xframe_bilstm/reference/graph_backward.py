"""The reference gradient of a model graph: backpropagation through its layers in numpy.

For one cotangent per model output (``g_k`` for output ``y_k``),
:func:`graph_gradients` returns the gradient of ``Σ_k Σ g_k ⊙ y_k`` with respect to every
float model input and every weight: the vector-Jacobian product a framework's autodiff
gives. The forward runs layer after layer as :func:`~.graph.run_model_reference` runs it,
keeping each layer's vector-Jacobian product (:mod:`~.layer_backward`; recurrent layers on
the scan's tape, :mod:`~.scan_backward`); the backward then walks the layers in reverse,
adding up the gradient of a tensor several layers read.

Weights are named ``<layer>/<weight>`` (``dense/kernel``, ``dense/bias``,
``embedding/embeddings``); a recurrent layer's by its canonical names
(``bilstm/forward.kernel``, ``bilstm/backward.recurrent_kernel``...). Integer inputs (token
ids) have no gradient. A graph with a layer kind that has no backward here is refused
before anything runs, naming its layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UnsupportedFeatureError, WeightShapeError
from ..graph import LayerRecord, ModelGraph, state_count
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
        weights: ``<layer>/<weight>`` to its gradient, in the order of the graph's layers.
        outputs: what the graph returned.
    """

    inputs: dict[str, np.ndarray | None]
    weights: dict[str, np.ndarray]
    outputs: tuple[np.ndarray, ...] = field(repr=False)

    def named(self) -> dict[str, np.ndarray]:
        """Every gradient by name: the float inputs, then the weights."""
        named = {name: g for name, g in self.inputs.items() if g is not None}
        named.update(self.weights)
        return named


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
    dtype: type = np.float64,
) -> GraphGradients:
    """Backpropagate ``cotangents`` through ``graph`` run on ``inputs``.

    Args:
        graph: the model.
        inputs: one array per model input, as :func:`~.graph.run_model_reference` takes them.
        cotangents: one array per model output, each shaped as it.
        dtype: the float type to compute in; float64 is the oracle.

    Raises:
        UnsupportedFeatureError: for a layer kind without a backward (all named).
        WeightShapeError: when the cotangents do not fit the outputs.

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
        masks[name] = None
    tapes: list[tuple[LayerRecord, Vjp]] = []
    for record in graph.layers:
        if record.kind == "input":
            continue
        tensors = [values[name] for name in record.inputs]
        in_masks = [masks[name] for name in record.inputs]
        if record.kind == "recurrent":
            produced, mask, vjp = _recurrent_step(record, tensors, in_masks[0], dtype)
        else:
            y, mask, vjp = layer_step(record, tensors, in_masks, dtype, _time_distributed)
            produced = (y,)  # one output
        for name, value in zip(_outputs_of(record), produced):
            values[name], masks[name] = value, (mask if name == record.name else None)
        tapes.append((record, vjp))
    outputs = tuple(values[name] for name in graph.outputs)
    grads = _seed(graph, outputs, cotangents, dtype)
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
        weights.update({f"{record.name}/{key}": value for key, value in d_weights.items()})
    ordered = {name: weights[name] for name in _weight_order(graph, tapes) if name in weights}
    found = {
        name: (grads.get(name, np.zeros_like(values[name])) if _is_float(values[name]) else None)
        for name in graph.inputs
    }
    return GraphGradients(found, ordered, outputs)


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
    if len(given) != len(outputs):
        raise WeightShapeError(
            f"cotangents: expected {len(outputs)} arrays, one per output of {graph.source} "
            f"({', '.join(graph.outputs)}), got {len(given)}"
        )
    grads: dict[str, np.ndarray] = {}
    for name, cotangent, output in zip(graph.outputs, given, outputs):
        array: np.ndarray = np.asarray(cotangent, dtype=dtype)
        if array.shape != output.shape:
            raise WeightShapeError(
                f"cotangents ({name}): expected shape {output.shape}, the shape of that "
                f"output, got {array.shape}"
            )
        grads[name] = grads[name] + array if name in grads else array
    return grads


def _weight_order(graph: ModelGraph, tapes: list[tuple[LayerRecord, Vjp]]) -> list[str]:
    del graph
    names: list[str] = []
    for record, _ in tapes:
        if record.kind == "recurrent":
            assert record.recurrent is not None
            sides = ("forward", "backward")[: len(record.recurrent.weights)]
            names += [f"{record.name}/{s}.{f}" for s in sides for f in RECURRENT_FIELDS]
        elif record.kind == "time_distributed":
            inner: LayerRecord = record.options["layer"]
            names += [f"{record.name}/{key}" for key in inner.weights]
        else:
            names += [f"{record.name}/{key}" for key in record.weights]
    return names


def _recurrent_step(
    record: LayerRecord, tensors: Sequence[np.ndarray], mask: Mask, dtype: type
) -> tuple[tuple[np.ndarray, ...], Mask, Vjp]:
    """A recurrent layer on the scan's tape: (its outputs, its mask, its backward)."""
    layer = record.recurrent
    assert layer is not None
    options = record.options
    time_major, sequences = bool(options["time_major"]), bool(options["return_sequences"])
    x = np.swapaxes(tensors[0], 0, 1) if time_major else tensors[0]
    given: list[np.ndarray] = [np.asarray(s, dtype) for s in tensors[1:]]
    states = given or [
        np.zeros((x.shape[0], layer.units), dtype) for _ in range(state_count(layer))
    ]
    outputs, finals, tape = forward_layer(
        layer, x.astype(dtype), states, mask, return_sequences=sequences, dtype=dtype
    )
    if len(outputs) != 1:
        raise UnsupportedFeatureError(
            f"layer {record.name!r}: a Bidirectional layer without merge_mode returns two "
            "tensors; the gradient reference differentiates merged ones"
        )
    (y,) = outputs
    y = np.swapaxes(y, 0, 1) if time_major and sequences else y
    returned = (y, *finals) if options.get("return_state") else (y,)

    def vjp(g: Any) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        parts = list(g) if isinstance(g, list) else [g]
        d_y = np.swapaxes(parts[0], 0, 1) if time_major and sequences else parts[0]
        d_finals = parts[1:] or [np.zeros_like(f) for f in finals]
        d_x, d_states, directions = backward_layer(layer, tape, (d_y,), d_finals)
        d_x = np.swapaxes(d_x, 0, 1) if time_major else d_x
        weights = {
            f"{side}.{name}": getattr(grads, name)
            for side, grads in zip(("forward", "backward"), directions)
            for name in RECURRENT_FIELDS
            if getattr(grads, name) is not None
        }
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


__all__ = ["GRAPH_BACKWARD_KINDS", "GraphGradients", "backward_refusal", "graph_gradients"]
