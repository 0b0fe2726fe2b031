"""One time step of each cell, written as its equations, in the canonical gate order.

Each step takes ``xk``, the step's input projection ``x K + b`` (computed for every step at
once by the scan), the states before the step, the recurrent kernel ``R`` and bias ``b'``,
and the cell's gate activation ``σ`` and activation ``act``; it returns the states after
the step, whose first is ``h``, the step's output. The equations, as in
``docs/conventions.md``:

- LSTM (gates i, f, c, o)::

      i, f, o = σ(z_i), σ(z_f), σ(z_o)      with z = x K + b + h R + b'
      c' = f ⊙ c + i ⊙ act(z_c);   h' = o ⊙ act(c')

- GRU (gates z, r, h), ``reset_after=True``::

      z, r = σ(x K_z + b_z + h R_z + b'_z), σ(x K_r + b_r + h R_r + b'_r)
      ĥ = act(x K_h + b_h + r ⊙ (h R_h + b'_h));   h' = z ⊙ h + (1 - z) ⊙ ĥ

  and with ``reset_after=False``: ``ĥ = act(x K_h + b_h + (r ⊙ h) R_h)``.
- SimpleRNN: ``h' = act(x K + b + h R + b')``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Activation = Callable[[np.ndarray], np.ndarray]
States = tuple[np.ndarray, ...]


def lstm_step(
    xk: np.ndarray,
    states: States,
    R: np.ndarray,
    b_r: np.ndarray,
    σ: Activation,
    act: Activation,
    reset_after: bool,
) -> States:
    """``(h', c')`` from ``(h, c)``.

    Example:
        >>> ident = lambda v: v
        >>> h, c = lstm_step(np.ones((1, 4)), (np.zeros((1, 1)), np.ones((1, 1))),
        ...                  np.zeros((1, 4)), np.zeros(4), ident, ident, True)
        >>> float(h[0, 0]), float(c[0, 0])
        (2.0, 2.0)
    """
    h, c = states
    z_i, z_f, z_c, z_o = np.split(xk + h @ R + b_r, 4, axis=-1)
    i, f, o = σ(z_i), σ(z_f), σ(z_o)
    c_new = f * c + i * act(z_c)
    return o * act(c_new), c_new


def gru_step(
    xk: np.ndarray,
    states: States,
    R: np.ndarray,
    b_r: np.ndarray,
    σ: Activation,
    act: Activation,
    reset_after: bool,
) -> States:
    """``(h',)`` from ``(h,)``; ``reset_after`` applies the reset gate after ``h R_h``."""
    (h,) = states
    xk_z, xk_r, xk_h = np.split(xk, 3, axis=-1)
    if reset_after:
        hr_z, hr_r, hr_h = np.split(h @ R + b_r, 3, axis=-1)
        z, r = σ(xk_z + hr_z), σ(xk_r + hr_r)
        candidate = act(xk_h + r * hr_h)
    else:  # Keras 2's default: no recurrent bias, the reset gate scales h before R_h
        R_z, R_r, R_h = np.split(R, 3, axis=-1)
        z, r = σ(xk_z + h @ R_z), σ(xk_r + h @ R_r)
        candidate = act(xk_h + (r * h) @ R_h)
    return (z * h + (1 - z) * candidate,)


def simple_rnn_step(
    xk: np.ndarray,
    states: States,
    R: np.ndarray,
    b_r: np.ndarray,
    σ: Activation,
    act: Activation,
    reset_after: bool,
) -> States:
    """``(h',)`` from ``(h,)``; a SimpleRNN has no gates, so ``σ`` is unused."""
    (h,) = states
    return (act(xk + h @ R + b_r),)


STEPS: dict[str, Callable[..., States]] = {
    "lstm": lstm_step,
    "gru": gru_step,
    "simple_rnn": simple_rnn_step,
}

__all__ = ["STEPS", "gru_step", "lstm_step", "simple_rnn_step"]
