"""The reference of a canonical stack: its graph (one node per layer) on the graph reference.

It follows Keras's semantics, which the canonical form stores (``docs/conventions.md``):
the equations of each cell are in :mod:`~xframe_bilstm.reference.cells`, masks, directions
and merges in :mod:`~xframe_bilstm.reference.scan`. Masks here are right-padded ``lengths``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..canonical import RecurrentStack
from ..errors import WeightShapeError
from ..stack_graph import split_initial_states as split_states
from ..stack_graph import stack_graph
from .graph import run_model_reference


def run_reference(
    stack: RecurrentStack,
    x: np.ndarray,
    *,
    initial_states: Sequence[np.ndarray] | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
    dtype: type[np.floating] | np.dtype = np.float64,
) -> tuple[np.ndarray, ...]:
    """Run ``stack`` on batch-first input ``x`` (B, T, D) and return what Keras returns.

    Args:
        stack: the canonical layers.
        x: input of shape (B, T, D).
        initial_states: every layer's initial states in Keras order, layer after layer
            (e.g. ``[h_f, c_f, h_b, c_b]`` for one bidirectional LSTM), each (B, H).
            Default: zeros.
        lengths: valid steps per batch row (B,), for right-padded input; each in 1..T.
        dtype: the float type to compute in; float64 is the oracle, float32 measures the
            rounding noise a float32 framework can be expected to show.

    Returns:
        The arrays named by :func:`~xframe_bilstm.canonical.output_names`, in that order.

    Example:
        >>> from xframe_bilstm import DirectionWeights, RecurrentLayer
        >>> w = DirectionWeights(np.eye(1), np.zeros((1, 1)), np.zeros(1))
        >>> layer = RecurrentLayer("simple_rnn", 1, 1, (w,), activation="linear",
        ...                        recurrent_activation=None)
        >>> (out,) = run_reference(RecurrentStack((layer,)), np.ones((1, 3, 1)))
        >>> out[0, :, 0].tolist()
        [1.0, 1.0, 1.0]
    """
    x = np.asarray(x, dtype=dtype)
    if x.ndim != 3 or x.shape[2] != stack.input_size:
        raise WeightShapeError(
            f"x: expected shape (batch, time, {stack.input_size}), got {x.shape}"
        )
    batch, steps, _ = x.shape
    if batch < 1 or steps < 1:
        raise WeightShapeError(f"x: expected at least one batch row and one step, got {x.shape}")
    graph = stack_graph(stack)  # one node per layer, its records named layers[i]
    kind = np.dtype(dtype).type
    return run_model_reference(
        graph, [x], dtype=kind, initial_states=initial_states, lengths=lengths
    )


def split_initial_states(
    stack: RecurrentStack,
    initial_states: Sequence[np.ndarray] | None,
    batch: int,
    dtype: type[np.floating] | np.dtype,
) -> list[list[np.ndarray]]:
    """Every layer's initial states (zeros when None), each checked to be (batch, units)."""
    named = [(f"layers[{index}]", layer) for index, layer in enumerate(stack.layers)]
    return split_states(named, initial_states, batch, dtype)
