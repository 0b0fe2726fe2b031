"""The float64 numpy reference: the equations of the canonical form, written to be checked.

It follows Keras's semantics, which the canonical form stores (see
``docs/conventions.md``):

- LSTM (gates i, f, c, o)::

      i, f, o = σr(z_i), σr(z_f), σr(z_o)      with z = x K + h R + b
      c' = f ⊙ c + i ⊙ act(z_c);   h' = o ⊙ act(c')

- GRU (gates z, r, h), ``reset_after=True``::

      z, r = σr(x K_z + b_z + h R_z + b'_z), σr(x K_r + b_r + h R_r + b'_r)
      ĥ = act(x K_h + b_h + r ⊙ (h R_h + b'_h));   h' = z ⊙ h + (1 - z) ⊙ ĥ

  and with ``reset_after=False``: ``ĥ = act(x K_h + b_h + (r ⊙ h) R_h)``.
- SimpleRNN: ``h' = act(x K + b + h R)``.

Masks are right-padded ``lengths``: a masked step keeps the states unchanged; its output is
the previous output for plain layers (zero with ``zero_masked_outputs``) and zero inside a
Bidirectional that returns sequences (Keras forces ``zero_output_for_mask`` there). A plain
layer that returns only its last output returns that step's output, so zero for a padded
row with ``zero_masked_outputs``. A ``"backward"`` direction reads the input and
the mask from the last step to the first and returns outputs in that processing order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .activations import numpy_activation
from .canonical import (
    DirectionWeights,
    RecurrentLayer,
    RecurrentStack,
    initial_state_count,
    layer_state_names,
)
from .errors import WeightShapeError
from .masks import mask_from_lengths

_MERGE = {
    "concat": lambda a, b: np.concatenate([a, b], axis=-1),
    "sum": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "ave": lambda a, b: (a + b) / 2,
}


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
    mask = None if lengths is None else mask_from_lengths(lengths, batch, steps)
    states = _split_initial_states(stack, initial_states, batch, dtype)

    sequence = x
    for index, layer in enumerate(stack.layers):
        is_last = index == len(stack.layers) - 1
        outputs, finals = _run_layer(
            layer,
            sequence,
            states[index],
            mask,
            return_sequences=stack.return_sequences or not is_last,
            dtype=dtype,
        )
        if not is_last:
            (sequence,) = outputs
    return outputs + (finals if stack.return_state else ())


def _split_initial_states(
    stack: RecurrentStack,
    initial_states: Sequence[np.ndarray] | None,
    batch: int,
    dtype: type[np.floating] | np.dtype,
) -> list[list[np.ndarray]]:
    if initial_states is None:
        return [
            [np.zeros((batch, layer.units), dtype) for _ in layer_state_names(layer)]
            for layer in stack.layers
        ]
    expected = initial_state_count(stack)
    if len(initial_states) != expected:
        raise WeightShapeError(
            f"initial_states: expected {expected} arrays (every layer's states in Keras "
            f"order), got {len(initial_states)}"
        )
    remaining = [np.asarray(s, dtype=dtype) for s in initial_states]
    split = []
    for index, layer in enumerate(stack.layers):
        names = layer_state_names(layer)
        chunk, remaining = remaining[: len(names)], remaining[len(names) :]
        for name, state in zip(names, chunk):
            if state.shape != (batch, layer.units):
                raise WeightShapeError(
                    f"initial_states (layers[{index}] {name}): expected shape "
                    f"{(batch, layer.units)}, got {state.shape}"
                )
        split.append(chunk)
    return split


def _run_layer(
    layer: RecurrentLayer,
    x: np.ndarray,
    states: list[np.ndarray],
    mask: np.ndarray | None,
    *,
    return_sequences: bool,
    dtype: type[np.floating] | np.dtype,
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """One layer: (outputs, final states in Keras order)."""
    per_direction = layer.num_states
    if layer.direction != "bidirectional":
        outputs, finals = _run_direction(
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
    y_f, finals_f = _run_direction(
        layer,
        layer.weights[0],
        x,
        states[:per_direction],
        mask,
        reverse=False,
        zero_masked_outputs=return_sequences,
        dtype=dtype,
    )
    y_b, finals_b = _run_direction(
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
    merged = (y_f, y_b) if layer.merge_mode is None else (_MERGE[layer.merge_mode](y_f, y_b),)
    return merged, finals_f + finals_b


def _run_direction(
    layer: RecurrentLayer,
    weights: DirectionWeights,
    x: np.ndarray,
    states: list[np.ndarray],
    mask: np.ndarray | None,
    *,
    reverse: bool,
    zero_masked_outputs: bool,
    dtype: type[np.floating] | np.dtype,
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Run one direction; outputs (B, T, H) in processing order, and the final states."""
    if reverse:
        x = x[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    kernel = weights.kernel.astype(dtype)
    recurrent = weights.recurrent_kernel.astype(dtype)
    act = numpy_activation(layer.activation)
    gate = numpy_activation(layer.recurrent_activation or "linear")
    units = layer.units

    # (B, T, G·H): the input projection of every step at once; only the recurrence loops.
    projected = x @ kernel
    if weights.input_bias is not None:
        projected = projected + weights.input_bias.astype(dtype)
    recurrent_bias = (
        np.zeros(layer.num_gates * units, dtype)
        if weights.recurrent_bias is None
        else weights.recurrent_bias.astype(dtype)
    )

    is_lstm = layer.cell == "lstm"
    h = states[0]
    c = new_c = states[1] if is_lstm else np.zeros(0, dtype)  # only LSTMs have a cell state
    previous_output = np.zeros_like(h)
    outputs = []
    for t in range(x.shape[1]):
        z = projected[:, t]
        if is_lstm:
            zi, zf, zc, zo = np.split(z + h @ recurrent + recurrent_bias, 4, axis=-1)
            new_c = gate(zf) * c + gate(zi) * act(zc)
            new_h = gate(zo) * act(new_c)
        elif layer.cell == "gru":
            xz, xr, xh = np.split(z, 3, axis=-1)
            if layer.reset_after:
                hz, hr, hh = np.split(h @ recurrent + recurrent_bias, 3, axis=-1)
                update, reset = gate(xz + hz), gate(xr + hr)
                candidate = act(xh + reset * hh)
            else:
                r_z, r_r, r_h = np.split(recurrent, 3, axis=-1)
                update, reset = gate(xz + h @ r_z), gate(xr + h @ r_r)
                candidate = act(xh + (reset * h) @ r_h)
            new_h = update * h + (1 - update) * candidate
        else:
            new_h = act(z + h @ recurrent + recurrent_bias)

        if mask is None:
            h, c = new_h, new_c
            output = h
        else:
            keep = mask[:, t, None]  # (B, 1): True where this step is valid
            h = np.where(keep, new_h, h)
            c = np.where(keep, new_c, c) if is_lstm else c
            output = np.where(keep, h, 0 if zero_masked_outputs else previous_output)
        previous_output = output
        outputs.append(output)
    finals = (h, c) if is_lstm else (h,)
    return np.stack(outputs, axis=1), finals
