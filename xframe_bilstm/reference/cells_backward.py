"""One time step of each cell and its derivative: backpropagation through one step.

Each cell has two functions. ``*_forward`` computes exactly what
:mod:`~xframe_bilstm.reference.cells` computes (the same operations in the same order, so
the same bits) and also returns the step's intermediate values, its *tape*. ``*_backward``
takes the tape and the gradients with respect to the states after the step, and returns the
gradients with respect to the step's input projection ``xk``, the states before the step,
the recurrent kernel ``R`` and the recurrent bias ``b'``. Names follow the forward's
equations; ``d_v`` is the gradient of the loss with respect to ``v``, ``dσ`` and ``dact``
the activations' vector-Jacobian products (:mod:`~.activation_grads`).

- LSTM: ``do = dh' ⊙ act(c')``, ``dc = dc' + act'(c') ⊙ o ⊙ dh'``, then
  ``df = dc ⊙ c``, ``di = dc ⊙ act(z_c)``, ``d act(z_c) = dc ⊙ i`` and ``dc_prev = dc ⊙ f``;
  ``dz = (σ'(z_i) di, σ'(z_f) df, act'(z_c) ⊙ i ⊙ dc, σ'(z_o) do)`` feeds both ``xk``
  and ``h R + b'``.
- GRU: ``dz = dh' ⊙ (h - ĥ)``, ``dĥ = dh' ⊙ (1 - z)``, ``dh = dh' ⊙ z`` plus what flows
  back through ``R``; ``reset_after=True`` reaches ``r`` through ``h R_h + b'_h``,
  ``reset_after=False`` through ``(r ⊙ h) R_h``.
- SimpleRNN: ``d pre = act'(pre) ⊙ dh'``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .activation_grads import ActivationVjp
from .cells import Activation, States

Tape = tuple[np.ndarray, ...]
# (d_xk, d_states_before, d_R, d_b_r) of one step, summed over the batch for R and b'.
StepGradients = tuple[np.ndarray, States, np.ndarray, np.ndarray]


def _gates(v: np.ndarray, count: int) -> list[np.ndarray]:
    """``np.split(v, count, axis=-1)``: the same views, without its per-call overhead."""
    width = v.shape[-1] // count
    return [v[..., k * width : (k + 1) * width] for k in range(count)]


def lstm_forward(
    xk: np.ndarray,
    states: States,
    R: np.ndarray,
    b_r: np.ndarray,
    σ: Activation,
    act: Activation,
    reset_after: bool,
) -> tuple[States, Tape]:
    """``(h', c')`` from ``(h, c)``, and the tape of the step."""
    h, c = states
    z_i, z_f, z_c, z_o = _gates(xk + h @ R + b_r, 4)
    i, f, o = σ(z_i), σ(z_f), σ(z_o)
    candidate = act(z_c)
    c_new = f * c + i * candidate
    act_c_new = act(c_new)
    return (o * act_c_new, c_new), (h, c, z_i, z_f, z_c, z_o, i, f, o, candidate, c_new, act_c_new)


def lstm_backward(
    tape: Tape,
    d_new: States,
    R: np.ndarray,
    dσ: ActivationVjp,
    dact: ActivationVjp,
    reset_after: bool,
) -> StepGradients:
    """The gradients of one LSTM step from those of ``(h', c')``.

    Example:
        >>> ident = lambda v: v
        >>> dident = lambda z, y, g: g
        >>> states, tape = lstm_forward(np.ones((1, 4)), (np.zeros((1, 1)), np.ones((1, 1))),
        ...                             np.zeros((1, 4)), np.zeros(4), ident, ident, True)
        >>> d_xk, (d_h, d_c), _, _ = lstm_backward(tape, (np.ones((1, 1)), np.zeros((1, 1))),
        ...                                        np.zeros((1, 4)), dident, dident, True)
        >>> d_xk.tolist(), d_c.tolist()   # h' = o (f c + i z_c): dz = (o z_c, o c, o i, c')
        ([[1.0, 1.0, 1.0, 2.0]], [[1.0]])
    """
    h, c, z_i, z_f, z_c, z_o, i, f, o, candidate, c_new, act_c_new = tape
    d_h_new, d_c_new = d_new
    d_o = d_h_new * act_c_new
    d_c = d_c_new + dact(c_new, act_c_new, d_h_new * o)
    d_z = np.concatenate(
        [
            dσ(z_i, i, d_c * candidate),
            dσ(z_f, f, d_c * c),
            dact(z_c, candidate, d_c * i),
            dσ(z_o, o, d_o),
        ],
        axis=-1,
    )
    # z = xk + h R + b': the same gradient reaches xk, b' and (through R) h.
    return d_z, (d_z @ R.T, d_c * f), h.T @ d_z, d_z.sum(axis=0)


def gru_forward(
    xk: np.ndarray,
    states: States,
    R: np.ndarray,
    b_r: np.ndarray,
    σ: Activation,
    act: Activation,
    reset_after: bool,
) -> tuple[States, Tape]:
    """``(h',)`` from ``(h,)``, and the tape of the step."""
    (h,) = states
    xk_z, xk_r, xk_h = _gates(xk, 3)
    if reset_after:
        hr_z, hr_r, hr_h = _gates(h @ R + b_r, 3)
        pre_z, pre_r = xk_z + hr_z, xk_r + hr_r
        z, r = σ(pre_z), σ(pre_r)
        pre_h = xk_h + r * hr_h
        # hr_h is what r scales; with reset_after=False that role is r ⊙ h's.
        scaled = hr_h
    else:
        R_z, R_r, R_h = _gates(R, 3)
        pre_z, pre_r = xk_z + h @ R_z, xk_r + h @ R_r
        z, r = σ(pre_z), σ(pre_r)
        scaled = r * h
        pre_h = xk_h + scaled @ R_h
    candidate = act(pre_h)
    return (z * h + (1 - z) * candidate,), (h, pre_z, pre_r, pre_h, z, r, candidate, scaled)


def gru_backward(
    tape: Tape,
    d_new: States,
    R: np.ndarray,
    dσ: ActivationVjp,
    dact: ActivationVjp,
    reset_after: bool,
) -> StepGradients:
    """The gradients of one GRU step from those of ``(h',)``."""
    h, pre_z, pre_r, pre_h, z, r, candidate, scaled = tape
    (d_h_new,) = d_new
    d_pre_z = dσ(pre_z, z, d_h_new * (h - candidate))
    d_pre_h = dact(pre_h, candidate, d_h_new * (1 - z))
    d_h = d_h_new * z
    if reset_after:
        # pre_h = xk_h + r ⊙ (h R_h + b'_h)
        d_pre_r = dσ(pre_r, r, d_pre_h * scaled)
        d_hr = np.concatenate([d_pre_z, d_pre_r, d_pre_h * r], axis=-1)
        d_xk = np.concatenate([d_pre_z, d_pre_r, d_pre_h], axis=-1)
        return d_xk, (d_h + d_hr @ R.T,), h.T @ d_hr, d_hr.sum(axis=0)
    # pre_h = xk_h + (r ⊙ h) R_h; no recurrent bias takes part.
    units = h.shape[-1]
    R_zr, R_h = R[:, : 2 * units], R[:, 2 * units :]
    d_scaled = d_pre_h @ R_h.T
    d_pre_r = dσ(pre_r, r, d_scaled * h)
    d_zr = np.concatenate([d_pre_z, d_pre_r], axis=-1)
    d_h = d_h + d_scaled * r + d_zr @ R_zr.T
    d_R = np.concatenate([h.T @ d_zr, scaled.T @ d_pre_h], axis=-1)
    d_xk = np.concatenate([d_zr, d_pre_h], axis=-1)
    return d_xk, (d_h,), d_R, np.zeros(R.shape[1], R.dtype)


def simple_rnn_forward(
    xk: np.ndarray,
    states: States,
    R: np.ndarray,
    b_r: np.ndarray,
    σ: Activation,
    act: Activation,
    reset_after: bool,
) -> tuple[States, Tape]:
    """``(h',)`` from ``(h,)``, and the tape of the step."""
    (h,) = states
    pre = xk + h @ R + b_r
    h_new = act(pre)
    return (h_new,), (h, pre, h_new)


def simple_rnn_backward(
    tape: Tape,
    d_new: States,
    R: np.ndarray,
    dσ: ActivationVjp,
    dact: ActivationVjp,
    reset_after: bool,
) -> StepGradients:
    """The gradients of one SimpleRNN step from those of ``(h',)``."""
    h, pre, h_new = tape
    (d_h_new,) = d_new
    d_pre = dact(pre, h_new, d_h_new)
    return d_pre, (d_pre @ R.T,), h.T @ d_pre, d_pre.sum(axis=0)


FORWARD_STEPS: dict[str, Callable[..., tuple[States, Tape]]] = {
    "lstm": lstm_forward,
    "gru": gru_forward,
    "simple_rnn": simple_rnn_forward,
}
BACKWARD_STEPS: dict[str, Callable[..., StepGradients]] = {
    "lstm": lstm_backward,
    "gru": gru_backward,
    "simple_rnn": simple_rnn_backward,
}

__all__ = [
    "BACKWARD_STEPS",
    "FORWARD_STEPS",
    "gru_backward",
    "gru_forward",
    "lstm_backward",
    "lstm_forward",
    "simple_rnn_backward",
    "simple_rnn_forward",
]
