"""Backpropagation through time on the one scan: masks, directions, merges and states.

:func:`forward_layer` runs a layer as :func:`~xframe_bilstm.reference.scan.run_layer` does
(same outputs, bit for bit) and keeps a tape; :func:`backward_layer` walks that tape from
the last step to the first with the cells' backward steps
(:mod:`~xframe_bilstm.reference.cells_backward`).

Padded steps mirror the forward: there a masked step keeps the states and outputs the
previous output (or zero), so backward the states' gradient passes through a masked step
unchanged, the gradient of a repeated output flows to the step whose output it repeats, a
zeroed output passes none, and the step's own computation receives nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..activations import numpy_activation
from ..canonical import DirectionWeights, RecurrentLayer
from .activation_grads import activation_vjp
from .cells_backward import BACKWARD_STEPS, FORWARD_STEPS, Tape
from .scan import MERGES


@dataclass(frozen=True)
class DirectionTape:
    """What one direction's forward keeps for its backward, in processing order."""

    x: np.ndarray  # (B, T, D) the input as the direction reads it
    mask: np.ndarray | None  # (B, T) likewise
    steps: tuple[Tape, ...]
    reverse: bool
    zero_masked_outputs: bool


@dataclass(frozen=True)
class LayerTape:
    """A layer's direction tapes and what its backward needs to undo the merge."""

    directions: tuple[DirectionTape, ...]
    return_sequences: bool
    halves: tuple[np.ndarray, ...]  # the selected (y_f, y_b) that were merged


@dataclass(frozen=True)
class DirectionGradients:
    """The gradients of one direction's weights, shaped as its :class:`DirectionWeights`."""

    kernel: np.ndarray
    recurrent_kernel: np.ndarray
    bias: np.ndarray | None


def _recurrent_bias(layer: RecurrentLayer, weights: DirectionWeights, dtype: object) -> np.ndarray:
    if weights.recurrent_bias is None:
        return np.zeros(layer.num_gates * layer.units, dtype)  # type: ignore[call-overload]
    return weights.recurrent_bias.astype(dtype)  # type: ignore[call-overload]


def forward_direction(
    layer: RecurrentLayer,
    weights: DirectionWeights,
    x: np.ndarray,
    states: Sequence[np.ndarray],
    mask: np.ndarray | None,
    *,
    reverse: bool,
    zero_masked_outputs: bool,
    dtype: type[np.floating] | np.dtype,
) -> tuple[np.ndarray, tuple[np.ndarray, ...], DirectionTape]:
    """One direction as :func:`~.scan.scan_direction` runs it, and its tape."""
    if reverse:
        x = x[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    step = FORWARD_STEPS[layer.cell]
    act = numpy_activation(layer.activation)
    σ = numpy_activation(layer.recurrent_activation or "linear")
    R = weights.recurrent_kernel.astype(dtype)
    b_r = _recurrent_bias(layer, weights, dtype)
    xk = x @ weights.kernel.astype(dtype)
    if weights.input_bias is not None:
        xk = xk + weights.input_bias.astype(dtype)

    current = tuple(states)
    previous_output = np.zeros_like(current[0])
    outputs, tapes = [], []
    for t in range(x.shape[1]):
        new, tape = step(xk[:, t], current, R, b_r, σ, act, layer.reset_after)
        tapes.append(tape)
        if mask is None:
            current, output = new, new[0]
        else:
            keep = mask[:, t, None]
            current = tuple(np.where(keep, n, s) for n, s in zip(new, current))
            output = np.where(keep, current[0], 0 if zero_masked_outputs else previous_output)
        previous_output = output
        outputs.append(output)
    tape_ = DirectionTape(x, mask, tuple(tapes), reverse, zero_masked_outputs)
    return np.stack(outputs, axis=1), current, tape_


def backward_direction(
    layer: RecurrentLayer,
    weights: DirectionWeights,
    tape: DirectionTape,
    d_outputs: np.ndarray,
    d_finals: Sequence[np.ndarray],
) -> tuple[np.ndarray, tuple[np.ndarray, ...], DirectionGradients]:
    """The gradients of one direction from those of its outputs and final states.

    Args:
        layer: the layer the direction belongs to.
        weights: the direction's weights.
        tape: what :func:`forward_direction` kept.
        d_outputs: (B, T, H), the outputs' gradient in processing order.
        d_finals: the final states' gradients.

    Returns:
        The gradient of the input (B, T, D) in input time, of the initial states, and of
        the weights.
    """
    step = BACKWARD_STEPS[layer.cell]
    dact = activation_vjp(layer.activation)
    dσ = activation_vjp(layer.recurrent_activation or "linear", "recurrent_activation")
    dtype = tape.x.dtype
    R = weights.recurrent_kernel.astype(dtype)
    mask = tape.mask
    d_current = tuple(np.asarray(d, dtype) for d in d_finals)
    d_xk = np.empty((*tape.x.shape[:2], R.shape[1]), dtype)
    d_R = np.zeros_like(R)
    d_b_r = np.zeros(R.shape[1], dtype)
    d_repeated = None  # the gradient of an output that a later masked step repeated
    for t in range(tape.x.shape[1] - 1, -1, -1):
        d_output = d_outputs[:, t] if d_repeated is None else d_outputs[:, t] + d_repeated
        if mask is None:
            d_new = (d_current[0] + d_output, *d_current[1:])
            d_carried: tuple[np.ndarray, ...] | None = None
        else:
            keep = mask[:, t, None]
            # output = keep ? h' : (previous output or 0); states = keep ? new : unchanged
            if not tape.zero_masked_outputs:
                d_repeated = np.where(keep, 0.0, d_output)
            d_h = d_current[0] + np.where(keep, d_output, 0.0)
            d_states = (d_h, *d_current[1:])
            d_new = tuple(np.where(keep, d, 0.0) for d in d_states)
            d_carried = tuple(np.where(keep, 0.0, d) for d in d_states)
        d_xk[:, t], d_before, d_R_t, d_b_r_t = step(
            tape.steps[t], d_new, R, dσ, dact, layer.reset_after
        )
        d_R += d_R_t
        d_b_r += d_b_r_t
        d_current = (
            d_before if d_carried is None else tuple(a + b for a, b in zip(d_before, d_carried))
        )

    d_x = d_xk @ weights.kernel.astype(dtype).T
    flat_x = tape.x.reshape(-1, tape.x.shape[-1])
    d_kernel = flat_x.T @ d_xk.reshape(-1, d_xk.shape[-1])
    d_b = d_xk.sum(axis=(0, 1))
    bias = {"none": None, "single": d_b, "split": np.stack([d_b, d_b_r])}[weights.bias_layout]
    gradients = DirectionGradients(d_kernel, d_R, bias)
    return (d_x[:, ::-1] if tape.reverse else d_x), d_current, gradients


def forward_layer(
    layer: RecurrentLayer,
    x: np.ndarray,
    states: Sequence[np.ndarray],
    mask: np.ndarray | None,
    *,
    return_sequences: bool,
    dtype: type[np.floating] | np.dtype,
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], LayerTape]:
    """One layer as :func:`~.scan.run_layer` runs it, and its tape."""
    if layer.direction != "bidirectional":
        outputs, finals, tape = forward_direction(
            layer,
            layer.weights[0],
            x,
            states,
            mask,
            reverse=layer.direction == "backward",
            zero_masked_outputs=layer.zero_masked_outputs,
            dtype=dtype,
        )
        selected = outputs if return_sequences else outputs[:, -1]
        return (selected,), finals, LayerTape((tape,), return_sequences, ())

    per_direction = layer.num_states
    halves = []
    for index, reverse in enumerate((False, True)):
        chunk = states[index * per_direction : (index + 1) * per_direction]
        halves.append(
            forward_direction(
                layer,
                layer.weights[index],
                x,
                chunk,
                mask,
                reverse=reverse,
                zero_masked_outputs=return_sequences,
                dtype=dtype,
            )
        )
    (y_f, finals_f, tape_f), (y_b, finals_b, tape_b) = halves
    y_f, y_b = (y_f, y_b[:, ::-1]) if return_sequences else (y_f[:, -1], y_b[:, -1])
    merged = (y_f, y_b) if layer.merge_mode is None else (MERGES[layer.merge_mode](y_f, y_b),)
    return merged, finals_f + finals_b, LayerTape((tape_f, tape_b), return_sequences, (y_f, y_b))


def _unmerge(
    merge_mode: str | None, d_outputs: Sequence[np.ndarray], halves: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """The gradients of the two halves from that of their merge."""
    if merge_mode is None:
        return d_outputs[0], d_outputs[1]
    (d,) = d_outputs
    if merge_mode == "concat":
        units = halves[0].shape[-1]
        return d[..., :units], d[..., units:]
    if merge_mode == "sum":
        return d, d
    if merge_mode == "ave":
        return d / 2, d / 2
    y_f, y_b = halves  # "mul"
    return d * y_b, d * y_f


def _as_sequence(d: np.ndarray, tape: DirectionTape, return_sequences: bool) -> np.ndarray:
    """An output's gradient as (B, T, H): only the last step when the layer returns it alone."""
    if return_sequences:
        return d
    full = np.zeros(tape.x.shape[:2] + d.shape[-1:], d.dtype)
    full[:, -1] = d
    return full


def backward_layer(
    layer: RecurrentLayer,
    tape: LayerTape,
    d_outputs: Sequence[np.ndarray],
    d_finals: Sequence[np.ndarray],
) -> tuple[np.ndarray, list[np.ndarray], list[DirectionGradients]]:
    """The gradients of one layer: its input, its initial states (Keras order), each
    direction's weights, from the gradients of what :func:`forward_layer` returned."""
    if layer.direction != "bidirectional":
        (direction,) = tape.directions
        d_seq = _as_sequence(d_outputs[0], direction, tape.return_sequences)
        d_x, d_states, grads = backward_direction(
            layer, layer.weights[0], direction, d_seq, d_finals
        )
        return d_x, list(d_states), [grads]

    tape_f, tape_b = tape.directions
    d_f, d_b = _unmerge(layer.merge_mode, d_outputs, tape.halves)
    if tape.return_sequences:
        d_b = d_b[:, ::-1]  # back into the backward half's processing order
    per_direction = layer.num_states
    d_x_f, d_states_f, grads_f = backward_direction(
        layer,
        layer.weights[0],
        tape_f,
        _as_sequence(d_f, tape_f, tape.return_sequences),
        d_finals[:per_direction],
    )
    d_x_b, d_states_b, grads_b = backward_direction(
        layer,
        layer.weights[1],
        tape_b,
        _as_sequence(d_b, tape_b, tape.return_sequences),
        d_finals[per_direction:],
    )
    return d_x_f + d_x_b, list(d_states_f + d_states_b), [grads_f, grads_b]


__all__ = [
    "DirectionGradients",
    "DirectionTape",
    "LayerTape",
    "backward_direction",
    "backward_layer",
    "forward_direction",
    "forward_layer",
]
