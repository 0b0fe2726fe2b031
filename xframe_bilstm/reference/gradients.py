"""The reference gradient of a canonical stack: backpropagation through time in numpy.

For a cotangent on every output of :func:`~xframe_bilstm.reference.stack.run_reference`
(``g_k`` for output ``y_k``), :func:`reference_gradients` returns the gradient of
``Σ_k Σ g_k ⊙ y_k`` with respect to the input, every initial state and every weight: the
vector-Jacobian product a framework's autodiff gives for ``(y * cotangent).sum()``. The
layers run on the same scan as the forward (:mod:`~.scan_backward`), with one backward
step per cell (:mod:`~.cells_backward`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..canonical import RecurrentStack, layer_state_names, output_names
from ..errors import WeightShapeError
from ..masks import mask_from_lengths
from .scan_backward import DirectionGradients, LayerTape, backward_layer, forward_layer
from .stack import split_initial_states

WEIGHT_FIELDS = ("kernel", "recurrent_kernel", "bias")


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
    batch, steps, _ = x.shape
    if batch < 1 or steps < 1:
        raise WeightShapeError(f"x: expected at least one batch row and one step, got {x.shape}")
    mask = None if lengths is None else mask_from_lengths(lengths, batch, steps)
    states = split_initial_states(stack, initial_states, batch, dtype)

    tapes: list[LayerTape] = []
    sequence = x
    for index, layer in enumerate(stack.layers):
        is_last = index == len(stack.layers) - 1
        outputs, finals, tape = forward_layer(
            layer,
            sequence,
            states[index],
            mask,
            return_sequences=stack.return_sequences or not is_last,
            dtype=dtype,
        )
        tapes.append(tape)
        if not is_last:
            (sequence,) = outputs
    returned = outputs + (finals if stack.return_state else ())
    given = _check_cotangents(stack, cotangents, returned, dtype)

    d_outputs = given[: len(outputs)]
    d_finals = given[len(outputs) :] or tuple(np.zeros_like(s) for s in finals)
    d_states: list[list[np.ndarray]] = [[] for _ in stack.layers]
    weights: dict[str, np.ndarray] = {}
    for index in range(len(stack.layers) - 1, -1, -1):
        layer = stack.layers[index]
        d_x, d_states[index], grads = backward_layer(layer, tapes[index], d_outputs, d_finals)
        weights.update(_named_weights(index, grads))
        d_outputs = (d_x,)
        # The final states of the layers below the last are not returned.
        below = stack.layers[index - 1]
        d_finals = tuple(np.zeros((batch, below.units), dtype) for _ in layer_state_names(below))
    ordered = {name: weights[name] for name in _weight_names(stack)}
    flat_states = tuple(s for layer_states in d_states for s in layer_states)
    return ReferenceGradients(d_outputs[0], flat_states, ordered, returned)


def _check_cotangents(
    stack: RecurrentStack,
    cotangents: Sequence[np.ndarray],
    returned: tuple[np.ndarray, ...],
    dtype: type[np.floating] | np.dtype,
) -> tuple[np.ndarray, ...]:
    """The cotangents as arrays of ``dtype``, one per output and shaped as it."""
    names = output_names(stack)
    given = list(cotangents)
    if len(given) != len(names):
        raise WeightShapeError(
            f"cotangents: expected {len(names)} arrays, one per output of the stack "
            f"({', '.join(names)}), got {len(given)}"
        )
    arrays = []
    for name, cotangent, output in zip(names, given, returned):
        array = np.asarray(cotangent, dtype=dtype)
        if array.shape != output.shape:
            raise WeightShapeError(
                f"cotangents ({name}): expected shape {output.shape}, the shape of that "
                f"output, got {array.shape}"
            )
        arrays.append(array)
    return tuple(arrays)


def _named_weights(index: int, grads: list[DirectionGradients]) -> dict[str, np.ndarray]:
    named = {}
    for side, direction in zip(("forward", "backward"), grads):
        for name in WEIGHT_FIELDS:
            value = getattr(direction, name)
            if value is not None:
                named[f"layers[{index}].{side}.{name}"] = value
    return named


def _weight_names(stack: RecurrentStack) -> list[str]:
    """Every weight's name, layer after layer, in the order of the stack's weights."""
    return [
        f"layers[{index}].{side}.{name}"
        for index, layer in enumerate(stack.layers)
        for side, weights in zip(("forward", "backward"), layer.weights)
        for name in WEIGHT_FIELDS
        if getattr(weights, name) is not None
    ]


def initial_state_labels(stack: RecurrentStack) -> tuple[str, ...]:
    """What each of ``initial_states`` is, e.g. ``('layers[0].h_forward', ...)``.

    Example:
        >>> from xframe_bilstm import DirectionWeights, RecurrentLayer
        >>> w = DirectionWeights(np.zeros((3, 8)), np.zeros((2, 8)))
        >>> initial_state_labels(RecurrentStack((RecurrentLayer("lstm", 3, 2, (w,)),)))
        ('layers[0].h', 'layers[0].c')
    """
    return tuple(
        f"layers[{index}].{name}"
        for index, layer in enumerate(stack.layers)
        for name in layer_state_names(layer)
    )


__all__ = ["ReferenceGradients", "initial_state_labels", "reference_gradients"]
