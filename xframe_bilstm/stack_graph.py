"""A recurrent stack as a model graph, and the initial states a graph takes.

A :class:`~xframe_bilstm.canonical.RecurrentStack` is a graph with one node per layer: an
input ``x`` masked by the per-row ``lengths`` a run is given, one recurrent record per layer
(named ``layers[0]``, ``layers[1]``... as messages about a stack name them), and the last
layer's outputs (and final states, with ``return_state``) as the graph's outputs. The
recurrent records that read no states from the model take a run's ``initial_states``: every
such layer's states in Keras order, layer after layer, as a stack takes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .canonical import RecurrentLayer, RecurrentStack, layer_state_names, output_names
from .errors import UnsupportedFeatureError, WeightShapeError
from .graph import LayerRecord, ModelGraph

_CLASS_NAMES = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}


def stack_graph(stack: RecurrentStack) -> ModelGraph:
    """``stack`` as a graph: an input masked by lengths, one recurrent record per layer.

    Example:
        >>> from xframe_bilstm import DirectionWeights, RecurrentLayer
        >>> w = DirectionWeights(np.zeros((3, 2)), np.zeros((2, 2)))
        >>> layer = RecurrentLayer("simple_rnn", 3, 2, (w,), recurrent_activation=None)
        >>> graph = stack_graph(RecurrentStack((layer,), return_state=True))
        >>> [r.name for r in graph.layers], graph.outputs
        (['x', 'layers[0]'], ('layers[0]', 'layers[0]:1'))
    """
    options = {"shape": (None, stack.input_size), "dtype": "float32", "lengths": True}
    records = [LayerRecord("x", "input", "InputLayer", options=options)]
    for index, layer in enumerate(stack.layers):
        last = index == len(stack.layers) - 1
        flags = {"return_sequences": stack.return_sequences or not last, "time_major": False}
        flags |= {"unroll": False, "return_state": last and stack.return_state}
        flags |= {"stateful": stack.stateful}
        kind = "Bidirectional" if layer.direction == "bidirectional" else _CLASS_NAMES[layer.cell]
        reads = (records[-1].name,)
        records.append(LayerRecord(f"layers[{index}]", "recurrent", kind, reads, flags, {}, layer))
    source = f"a stack of {len(stack.layers)} recurrent layer(s)"
    outputs, labels = records[-1].outputs, output_names(stack)
    return ModelGraph("stack", tuple(records), ("x",), outputs, source=source, labels=labels)


def as_graph(reading: RecurrentStack | ModelGraph) -> ModelGraph:
    """The graph of a reading: a graph itself, or a stack's :func:`stack_graph`."""
    return stack_graph(reading) if isinstance(reading, RecurrentStack) else reading


def stack_of(graph: ModelGraph) -> RecurrentStack | None:
    """The recurrent stack ``graph`` is, when it is one as :func:`stack_graph` draws it: its
    input masked by lengths, then the chain of recurrent layers
    :meth:`~xframe_bilstm.graph.ModelGraph.as_stack` reads; None for any other graph, a
    whole model that masks by its values included. Builders port such a graph as the
    stack's own module, layer or ONNX graph, the one the layer's converters return.

    Example:
        >>> from xframe_bilstm import DirectionWeights, RecurrentLayer
        >>> w = DirectionWeights(np.zeros((3, 2)), np.zeros((2, 2)))
        >>> layer = RecurrentLayer("simple_rnn", 3, 2, (w,), recurrent_activation=None)
        >>> stack = RecurrentStack((layer,), return_state=True)
        >>> stack_of(stack_graph(stack)) == stack
        True
    """
    return graph.as_stack() if takes_lengths(graph) else None


def takes_lengths(graph: ModelGraph) -> bool:
    """Whether ``graph`` runs with per-row ``lengths`` (and initial states) beside its
    inputs: its input is right-padded, as a stack's is; a whole model masks by its values.

    Example:
        >>> from xframe_bilstm import DirectionWeights, RecurrentLayer
        >>> w = DirectionWeights(np.zeros((3, 2)), np.zeros((2, 2)))
        >>> layer = RecurrentLayer("simple_rnn", 3, 2, (w,), recurrent_activation=None)
        >>> takes_lengths(stack_graph(RecurrentStack((layer,))))
        True
    """
    return any(graph.layer(name).options.get("lengths") for name in graph.inputs)


def state_layers(graph: ModelGraph) -> list[LayerRecord]:
    """The recurrent records that take a run's initial states, in order; refuses a graph
    with no place for them, naming why."""
    recurrent = [record for record in graph.layers if record.kind == "recurrent"]
    if not recurrent:
        raise UnsupportedFeatureError(
            f"initial_states: {graph.source} has no recurrent layer to start from them; "
            "leave initial_states out"
        )
    fed = [record for record in recurrent if len(record.inputs) > 1]
    if fed:
        names = ", ".join(f"{r.name} ({r.class_name})" for r in fed)
        raise UnsupportedFeatureError(
            f"initial_states: in {graph.source}, {names} read their initial states from the "
            "model's own tensors; give them through the model's inputs, or leave "
            "initial_states out"
        )
    return recurrent


def split_initial_states(
    layers: Sequence[tuple[str, RecurrentLayer]],
    initial_states: Sequence[np.ndarray] | None,
    batch: int,
    dtype: type[np.floating] | np.dtype,
) -> list[list[np.ndarray]]:
    """Every named layer's initial states (zeros when None), each checked to be
    (batch, units).

    Example:
        >>> from xframe_bilstm import DirectionWeights, RecurrentLayer
        >>> w = DirectionWeights(np.zeros((3, 8)), np.zeros((2, 8)))
        >>> layer = RecurrentLayer("lstm", 3, 2, (w,))
        >>> [[s.shape for s in states] for states in
        ...  split_initial_states([("lstm", layer)], None, 4, np.float64)]
        [[(4, 2), (4, 2)]]
    """
    if initial_states is None:
        return [
            [np.zeros((batch, layer.units), dtype) for _ in layer_state_names(layer)]
            for _, layer in layers
        ]
    expected = sum(len(layer_state_names(layer)) for _, layer in layers)
    if len(initial_states) != expected:
        raise WeightShapeError(
            f"initial_states: expected {expected} arrays (every layer's states in Keras "
            f"order), got {len(initial_states)}"
        )
    remaining = [np.asarray(s, dtype=dtype) for s in initial_states]
    split = []
    for where, layer in layers:
        names = layer_state_names(layer)
        chunk, remaining = remaining[: len(names)], remaining[len(names) :]
        for name, state in zip(names, chunk):
            if state.shape != (batch, layer.units):
                raise WeightShapeError(
                    f"initial_states ({where} {name}): expected shape "
                    f"{(batch, layer.units)} (batch, units), got {state.shape}"
                )
        split.append(chunk)
    return split


def graph_initial_states(
    graph: ModelGraph,
    initial_states: Sequence[np.ndarray] | None,
    batch: int,
    dtype: type[np.floating] | np.dtype,
) -> dict[str, list[np.ndarray]]:
    """The initial states of each recurrent record that takes them, by record name; none
    when ``initial_states`` is None (every layer starts from zeros or its inputs)."""
    if initial_states is None:
        return {}
    layers = [(r.name, r.recurrent) for r in state_layers(graph) if r.recurrent is not None]
    split = split_initial_states(layers, initial_states, batch, dtype)
    return {name: states for (name, _), states in zip(layers, split)}


__all__ = [
    "as_graph",
    "graph_initial_states",
    "split_initial_states",
    "stack_graph",
    "stack_of",
    "state_layers",
    "takes_lengths",
]
