"""The inputs of an ONNX graph from a run's, and what its outputs mean.

Our exports (:func:`~xframe_bilstm.adapters.onnx.export_graph`, ``torch.onnx.export`` of a
port, Keras's export of a rebuild) take the model's inputs in order, then the initial states
and the lengths when the run gives them and the graph takes them: :func:`run_inputs`. An
ONNX graph as given (an ``@original``) is fed by :func:`graph_feeder`: a graph whose reading
is a recurrent stack (:func:`~xframe_bilstm.stack_graph.stack_of`) has its inputs told apart
by what they mean, any other takes the model's inputs in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..canonical import RecurrentStack
from ..correspondence import Source, graph_source, onnx_source
from ..errors import UnsupportedFeatureError, WeightShapeError
from ..graph import ModelGraph
from ..inputs import as_list
from ..stack_graph import stack_of


def run_inputs(
    graph: ModelGraph,
    x: Any,
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
) -> tuple[np.ndarray, ...]:
    """The arrays an export of ``graph`` takes, in its input order: the model's inputs, then
    the initial states and the lengths when the run gives them and the graph takes them
    (:func:`graph_lengths`; the exports add those inputs only then)."""
    taken = graph_lengths(graph, lengths)
    given = [*as_list(x), *(initial_states or ())]
    return tuple(given if taken is None else [*given, taken])


def graph_lengths(graph: ModelGraph, lengths: np.ndarray | None) -> np.ndarray | None:
    """``lengths`` where ``graph`` takes them, else None: an input masked by lengths (a
    stack's) takes them; any other graph masks its padding by its inputs' values
    (``Embedding(mask_zero=True)``, ``Masking``), which the lengths already padded."""
    masked = any(graph.layer(name).options.get("lengths") for name in graph.inputs)
    return lengths if masked else None


class RecurrentFeeds:
    """A graph of recurrent nodes, fed by what its inputs mean, as
    :func:`~xframe_bilstm.adapters.onnx.example_inputs.seeded_graph_inputs` tells them apart:
    the run's sequence in the layout the graph declares (time-major or batch-major), its
    initial states (zeros when none are given) and its lengths (full rows when none are
    given). Its outputs are matched with the stack's by meaning."""

    def __init__(self, model: Any, stack: RecurrentStack) -> None:
        from ..adapters.onnx.example_inputs import seeded_graph_inputs

        self.model, self.stack = model, stack
        inputs = seeded_graph_inputs(model, seed=0, batch=1, steps=1)
        self.time_major = inputs.time_major
        self.dtype = inputs.value(inputs.x_name).dtype.name

    def returns(self, batch: int, steps: int, description: str) -> Source:
        names = [output.name for output in self.model.graph.output]
        return onnx_source(self.stack, names, self.time_major, batch, steps, description)

    def feeds(
        self, x: Any, states: Sequence[np.ndarray] | None, lengths: np.ndarray | None
    ) -> tuple[np.ndarray, ...]:
        """Every input of the graph, in graph order, given by what it means."""
        from ..adapters.onnx.example_inputs import seeded_graph_inputs

        x = np.asarray(x)
        batch, steps = x.shape[:2]
        inputs = seeded_graph_inputs(self.model, seed=0, batch=batch, steps=steps, zero_states=True)
        feeds = inputs.feeds()
        feeds[inputs.x_name] = np.swapaxes(x, 0, 1) if inputs.time_major else x
        if states is not None:
            if len(states) != len(inputs.state_names):
                takes = ", ".join(inputs.state_names) or "no state inputs"
                raise WeightShapeError(
                    f"initial_states: {len(states)} arrays, where the graph takes "
                    f"{len(inputs.state_names)} ({takes}); compare it with one per state input"
                )
            feeds.update(zip(inputs.state_names, states))
        if inputs.lengths_name is not None:
            feeds[inputs.lengths_name] = np.full(batch, steps) if lengths is None else lengths
        elif lengths is not None:
            raise UnsupportedFeatureError(
                "lengths: the graph has no lengths input and runs every row in full; "
                "compare it without lengths"
            )
        return tuple(feeds[name] for name in inputs.names)


class ModelFeeds:
    """A graph standing for a whole model: it takes the model's inputs and returns its
    outputs, both in order.

    Raises:
        UnsupportedFeatureError: the graph's inputs or outputs do not match the model's in
            number, so it cannot be fed the model's inputs or paired with its outputs.
    """

    def __init__(self, model: Any, graph: ModelGraph) -> None:
        onnx = require("onnx")
        self.model, self.graph = model, graph
        initializers = {i.name for i in model.graph.initializer}
        inputs = [i.name for i in model.graph.input if i.name not in initializers]
        outputs = [o.name for o in model.graph.output]
        if len(inputs) != len(graph.inputs) or len(outputs) != len(graph.outputs):
            raise UnsupportedFeatureError(
                f"the ONNX graph takes {len(inputs)} input(s) {inputs} and returns "
                f"{len(outputs)} output(s) {outputs}, where {graph.source} takes "
                f"{len(graph.inputs)} {list(graph.inputs)} and returns {len(graph.outputs)} "
                f"{list(graph.outputs)}; compare an export of the same model"
            )
        # The dtype the graph computes in: its first output's.
        elem_type = model.graph.output[0].type.tensor_type.elem_type
        self.dtype = str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))

    def returns(self, batch: int, steps: int, description: str) -> Source:
        return graph_source(self.graph, description)

    def feeds(
        self, x: Any, states: Sequence[np.ndarray] | None, lengths: np.ndarray | None
    ) -> tuple[np.ndarray, ...]:
        return run_inputs(self.graph, x, states, lengths)


def graph_feeder(model: Any, graph: ModelGraph) -> RecurrentFeeds | ModelFeeds:
    """How the ONNX graph ``model``, which computes ``graph``, is fed and read: by meaning
    when ``graph`` is a recurrent stack, else the model's inputs and outputs in order."""
    stack = stack_of(graph)
    return ModelFeeds(model, graph) if stack is None else RecurrentFeeds(model, stack)
