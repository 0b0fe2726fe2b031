"""Keras layers and models built once and shared by every run of their structure.

Building a Keras layer and tracing its compiled function takes a tenth of a second or more,
far longer than running a small model: runs share one built layer per structure (cell kinds,
sizes, options, flags), dtype, device and kernel path, and only set its weights. Runs that
use a shared layer hold :data:`SHARED`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from .._imports import require
from ..canonical import RecurrentStack
from ..graph import ModelGraph
from ..stack_graph import stack_of
from .base import RunSpec


def layer_options(spec: RunSpec) -> dict[str, Any]:
    """The options of canonical_to_keras that select ``spec``'s kernel path."""
    return {
        "unroll": spec.path == "unroll",
        "use_cudnn": False if spec.path == "cudnn-off" else "auto",
    }


# Built layers by (structure, dtype, device), least recently used first. Runs of one
# structure come together in a matrix, so a few entries reuse nearly every layer.
_LAYERS: OrderedDict[Hashable, Any] = OrderedDict()
_LAYERS_KEPT = 32
SHARED = threading.RLock()


def shared_layer(stack: RecurrentStack, spec: RunSpec) -> Any:
    """A built layer of ``stack``'s structure holding ``stack``'s weights."""
    from ..adapters.keras import canonical_to_keras

    key = layer_key(stack, spec)
    layer = _LAYERS.get(key)
    if layer is None:
        layer = canonical_to_keras(stack, dtype=spec.dtype, **layer_options(spec))
        _LAYERS[key] = layer
        if len(_LAYERS) > _LAYERS_KEPT:
            _LAYERS.popitem(last=False)
    else:
        _LAYERS.move_to_end(key)
        _set_stack_weights(stack, layer)
    return layer


# Models rebuilt from graphs by (graph object, dtype, device, layer options), with the graph
# itself, so that its id is not reused while the entry lives.
_MODELS: OrderedDict[Hashable, tuple[ModelGraph, Any]] = OrderedDict()
_MODELS_KEPT = 8


def graph_model(graph: ModelGraph, spec: RunSpec) -> Any:
    """The functional model rebuilt from ``graph`` for ``spec``, built on its first run."""
    from ..adapters.keras import graph_to_keras

    options = layer_options(spec)
    key = (id(graph), spec.dtype, spec.device, tuple(sorted(options.items())))
    entry = _MODELS.get(key)
    if entry is None:
        entry = _MODELS[key] = (graph, graph_to_keras(graph, dtype=spec.dtype, **options))
        if len(_MODELS) > _MODELS_KEPT:
            _MODELS.popitem(last=False)
    _MODELS.move_to_end(key)
    return entry[1]


def keras_port(graph: ModelGraph, spec: RunSpec, batch: int) -> Any:
    """What the ``keras`` column runs for ``graph``, built for ``spec`` (hold
    :data:`SHARED` while using it): a stack's graph as the layer ``canonical_to_keras``
    gives (shared by structure; a stateful one of its own, for the run's ``batch``, as it
    keeps its states), any other graph as the functional model ``graph_to_keras`` rebuilds."""
    stack = stack_of(graph)
    if stack is None:
        return graph_model(graph, spec)
    if stack.stateful:  # its states live in the layer: never share one
        from ..adapters.keras import canonical_to_keras

        return canonical_to_keras(stack, dtype=spec.dtype, batch_size=batch, **layer_options(spec))
    return shared_layer(stack, spec)


def layer_key(stack: RecurrentStack, spec: RunSpec) -> Hashable:
    """Which shared layer runs ``stack`` for ``spec``: its structure, dtype, device, and the
    layer options of the kernel path."""
    options = tuple(sorted(layer_options(spec).items()))
    return (structure_key(stack), spec.dtype, spec.device, options)


def _set_stack_weights(stack: RecurrentStack, built: Any) -> None:
    """Put ``stack``'s weights into a layer or Sequential that canonical_to_keras built."""
    keras = require("keras")
    # The adapter's own per-layer setter, so the bias folding stays in one place.
    from ..adapters.keras import set_layer_weights

    members = (
        [built]
        if len(stack.layers) == 1
        else [m for m in built.layers if not isinstance(m, keras.layers.InputLayer)]
    )
    for canonical, member in zip(stack.layers, members, strict=True):
        set_layer_weights(canonical, member)


def structure_key(stack: RecurrentStack) -> Hashable:
    """Everything about a stack that a built Keras layer fixes, weights aside.

    Example:
        >>> from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer
        >>> def stack(value):
        ...     w = DirectionWeights(np.full((3, 2), value), np.zeros((2, 2)))
        ...     layer = RecurrentLayer("simple_rnn", 3, 2, (w,), recurrent_activation=None)
        ...     return RecurrentStack((layer,))
        >>> structure_key(stack(0.0)) == structure_key(stack(1.0))
        True
    """
    layers = tuple(
        (
            layer.cell,
            layer.input_size,
            layer.units,
            layer.direction,
            layer.merge_mode,
            layer.activation,
            layer.recurrent_activation,
            layer.reset_after,
            layer.bias_layout,
        )
        for layer in stack.layers
    )
    return (layers, stack.return_sequences, stack.return_state)


__all__ = [
    "SHARED",
    "graph_model",
    "keras_port",
    "layer_key",
    "layer_options",
    "shared_layer",
    "structure_key",
]
