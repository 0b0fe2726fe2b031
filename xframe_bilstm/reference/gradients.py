"""The reference gradient of a canonical stack: backpropagation through time in numpy.

For a cotangent on every output of :func:`~xframe_bilstm.reference.stack.run_reference`
(``g_k`` for output ``y_k``), :func:`reference_gradients` returns the gradient of
``Σ_k Σ g_k ⊙ y_k`` with respect to the input, every initial state and every weight: the
vector-Jacobian product a framework's autodiff gives for ``(y * cotangent).sum()``. A stack
is differentiated as its graph (:func:`~xframe_bilstm.stack_graph.stack_graph`) by the
graph's backward (:mod:`~.graph_backward`), as its forward runs on the graph reference: the
layers on the same scan as the forward (:mod:`~.scan_backward`), with one backward step per
cell (:mod:`~.cells_backward`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..canonical import RecurrentStack
from ..errors import WeightShapeError
from ..stack_graph import stack_graph
from .graph_backward import graph_gradients


@dataclass(frozen=True)
class ReferenceGradients:
    """The gradients of a stack's outputs, weighted by their cotangents.

    Attributes:
        inputs: (B, T, D), with respect to the input.
        initial_states: with respect to every layer's initial states, in the order
            ``initial_states`` takes them (zeros when none were given still get theirs).
        weights: with respect to every weight, named as the library names weights
            (``layers[0].forward.kernel``, ``.recurrent_kernel``, ``.bias``), each shaped
            as the weight. A layer with one direction names it ``forward``.
        outputs: what the stack returned, as :func:`~.stack.run_reference` returns it.
    """

    inputs: np.ndarray
    initial_states: tuple[np.ndarray, ...]
    weights: dict[str, np.ndarray]
    outputs: tuple[np.ndarray, ...] = field(repr=False)

    def named(self) -> dict[str, np.ndarray]:
        """Every gradient by name: ``inputs``, ``initial_states[i]``, then the weights.

        These are the names the library gives the arguments elsewhere (for example in
        the report of non-finite arguments).
        """
        named = {"inputs": self.inputs}
        named.update({f"initial_states[{i}]": s for i, s in enumerate(self.initial_states)})
        named.update(self.weights)
        return named


def reference_gradients(
    stack: RecurrentStack,
    x: np.ndarray,
    cotangents: Sequence[np.ndarray],
    *,
    initial_states: Sequence[np.ndarray] | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
    dtype: type[np.floating] | np.dtype = np.float64,
) -> ReferenceGradients:
    """Backpropagate ``cotangents`` through ``stack`` run on ``x``.

    Args:
        stack: the canonical layers.
        x: input of shape (B, T, D).
        cotangents: one array per output of the stack, in the order the forward returns
            them (:func:`~xframe_bilstm.canonical.output_names`), each shaped as its output.
        initial_states: as :func:`~.stack.run_reference` takes them. Default: zeros.
        lengths: valid steps per batch row (B,), for right-padded input.
        dtype: the float type to compute in; float64 is the oracle.

    Returns:
        The gradients with respect to the input, the initial states and every weight.

    Raises:
        WeightShapeError: when the input, states or cotangents do not fit the stack.
        UnsupportedFeatureError: for an activation whose derivative is not written.

    Example:
        >>> from xframe_bilstm import DirectionWeights, RecurrentLayer
        >>> w = DirectionWeights(np.full((1, 1), 2.0), np.full((1, 1), 0.5))
        >>> layer = RecurrentLayer("simple_rnn", 1, 1, (w,), activation="linear",
        ...                        recurrent_activation=None)
        >>> x = np.array([[[1.0], [1.0]]])          # h1 = 2 x1, h2 = 2 x2 + 0.5 h1
        >>> grads = reference_gradients(RecurrentStack((layer,)), x, [np.ones((1, 2, 1))])
        >>> grads.inputs[0, :, 0].tolist()          # d(h1 + h2)/dx = (2 + 1, 2)
        [3.0, 2.0]
        >>> grads.weights["layers[0].forward.recurrent_kernel"].tolist()   # h1
        [[2.0]]
    """
    x = np.asarray(x, dtype=dtype)
    if x.ndim != 3 or x.shape[2] != stack.input_size:
        raise WeightShapeError(
            f"x: expected shape (batch, time, {stack.input_size}), got {x.shape}"
        )
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise WeightShapeError(f"x: expected at least one batch row and one step, got {x.shape}")
    grads = graph_gradients(
        stack_graph(stack),
        [x],
        cotangents,
        initial_states=initial_states,
        lengths=lengths,
        dtype=np.dtype(dtype).type,
    )
    (d_x,) = grads.inputs.values()
    assert d_x is not None  # the input is float
    return ReferenceGradients(d_x, grads.initial_states, grads.weights, grads.outputs)


__all__ = ["ReferenceGradients", "reference_gradients"]
