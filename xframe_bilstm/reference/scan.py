"""The one scan every recurrent layer of the reference runs on: time, masks, direction,
merge and states, around a cell's step (:mod:`~xframe_bilstm.reference.cells`).

Masks are booleans (B, T), True where a step is valid, in any pattern: a masked step keeps
the states unchanged; its output is the previous output for plain layers (zero with
``zero_masked_outputs``) and zero inside a Bidirectional that returns sequences (Keras
forces ``zero_output_for_mask`` there). A layer that returns only its last output returns
that step's output, so zero for a padded row with ``zero_masked_outputs``. A ``"backward"``
direction reads the input and the mask from the last step to the first and returns outputs
in that processing order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..activations import numpy_activation
from ..canonical import DirectionWeights, RecurrentLayer
from .cells import STEPS

MERGES = {
    "concat": lambda a, b: np.concatenate([a, b], axis=-1),
    "sum": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "ave": lambda a, b: (a + b) / 2,
}


def run_layer(
    layer: RecurrentLayer,
    x: np.ndarray,
    states: Sequence[np.ndarray],
    mask: np.ndarray | None,
    *,
    return_sequences: bool,
    dtype: type[np.floating] | np.dtype,
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """One layer on ``x`` (B, T, D): its outputs, and its final states in Keras order.

    Example:
        >>> w = DirectionWeights(np.eye(1), np.zeros((1, 1)))
        >>> layer = RecurrentLayer("simple_rnn", 1, 1, (w,), activation="linear",
        ...                        recurrent_activation=None)
        >>> (y,), (h,) = run_layer(layer, np.ones((1, 2, 1)), [np.zeros((1, 1))], None,
        ...                        return_sequences=True, dtype=np.float64)
        >>> y[0, :, 0].tolist(), h.tolist()
        ([1.0, 1.0], [[1.0]])
    """
    per_direction = layer.num_states
    if layer.direction != "bidirectional":
        outputs, finals = scan_direction(
            layer,
            layer.weights[0],
            x,
            states,
            mask,
            reverse=layer.direction == "backward",
            zero_masked_outputs=layer.zero_masked_outputs,
            dtype=dtype,
        )
        return (outputs if return_sequences else outputs[:, -1],), finals

    # Keras zeroes masked outputs of both halves only when the Bidirectional returns sequences.
    y_f, finals_f = scan_direction(
        layer,
        layer.weights[0],
        x,
        states[:per_direction],
        mask,
        reverse=False,
        zero_masked_outputs=return_sequences,
        dtype=dtype,
    )
    y_b, finals_b = scan_direction(
        layer,
        layer.weights[1],
        x,
        states[per_direction:],
        mask,
        reverse=True,
        zero_masked_outputs=return_sequences,
        dtype=dtype,
    )
    # The backward half comes out in processing order: flip it back into input time.
    y_f, y_b = (y_f, y_b[:, ::-1]) if return_sequences else (y_f[:, -1], y_b[:, -1])
    merged = (y_f, y_b) if layer.merge_mode is None else (MERGES[layer.merge_mode](y_f, y_b),)
    return merged, finals_f + finals_b


def scan_direction(
    layer: RecurrentLayer,
    weights: DirectionWeights,
    x: np.ndarray,
    states: Sequence[np.ndarray],
    mask: np.ndarray | None,
    *,
    reverse: bool,
    zero_masked_outputs: bool,
    dtype: type[np.floating] | np.dtype,
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """One direction: outputs (B, T, H) in processing order, and the final states."""
    if reverse:
        x = x[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    step = STEPS[layer.cell]
    act = numpy_activation(layer.activation)
    σ = numpy_activation(layer.recurrent_activation or "linear")
    R = weights.recurrent_kernel.astype(dtype)
    b_r = (
        np.zeros(layer.num_gates * layer.units, dtype)
        if weights.recurrent_bias is None
        else weights.recurrent_bias.astype(dtype)
    )
    # (B, T, G·H): the input projection of every step at once; only the recurrence loops.
    xk = x @ weights.kernel.astype(dtype)
    if weights.input_bias is not None:
        xk = xk + weights.input_bias.astype(dtype)

    current = tuple(states)
    previous_output = np.zeros_like(current[0])
    outputs = []
    for t in range(x.shape[1]):
        new = step(xk[:, t], current, R, b_r, σ, act, layer.reset_after)
        if mask is None:
            current, output = new, new[0]
        else:
            keep = mask[:, t, None]  # (B, 1): True where this step is valid
            current = tuple(np.where(keep, n, s) for n, s in zip(new, current))
            output = np.where(keep, current[0], 0 if zero_masked_outputs else previous_output)
        previous_output = output
        outputs.append(output)
    return np.stack(outputs, axis=1), current


__all__ = ["MERGES", "run_layer", "scan_direction"]
