"""The float64 numpy reference (the oracle): one step function per cell
(:mod:`~.cells`), one scan for masks, directions, merges and states (:mod:`~.scan`), run on
a canonical stack (:mod:`~.stack`) or on a model graph (:mod:`~.graph`); and the
gradient of a stack by backpropagation through time (:mod:`~.gradients`). It imports numpy
only, and refuses what it does not implement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..canonical import RecurrentStack
from ..graph import ModelGraph
from ..stack_graph import as_graph
from .gradients import ReferenceGradients, reference_gradients
from .graph import run_model_reference
from .stack import run_reference

# What the library reads a source as: a stack of recurrent layers, or a graph of layers.
Reading = RecurrentStack | ModelGraph


def reference_outputs(
    reading: Reading,
    inputs: Any,
    *,
    dtype: Any = np.float64,
    initial_states: Sequence[np.ndarray] | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Run a stack on its input (B, T, D), or a graph on one array per model input.

    A stack runs as its graph (:func:`~xframe_bilstm.stack_graph.stack_graph`), on the same
    graph reference as a whole model. ``lengths`` mask a stack's input; a whole model masks
    padding by its values (``Embedding(mask_zero=True)``, ``Masking``). ``initial_states``
    start every recurrent layer that reads none from the model, layer after layer.

    Example:
        >>> from xframe_bilstm import DirectionWeights, RecurrentLayer
        >>> w = DirectionWeights(np.eye(1), np.zeros((1, 1)))
        >>> layer = RecurrentLayer("simple_rnn", 1, 1, (w,), activation="linear",
        ...                        recurrent_activation=None)
        >>> (y,) = reference_outputs(RecurrentStack((layer,)), np.ones((1, 2, 1)))
        >>> y[0, :, 0].tolist()
        [1.0, 1.0]
    """
    arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
    return run_model_reference(
        as_graph(reading), arrays, dtype=dtype, initial_states=initial_states, lengths=lengths
    )


__all__ = [
    "Reading",
    "ReferenceGradients",
    "reference_gradients",
    "reference_outputs",
    "run_model_reference",
    "run_reference",
]
