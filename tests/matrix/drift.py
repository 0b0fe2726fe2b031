"""Injected drift: torch's outputs moved away from the float64 reference, by known amounts.

The moved outputs are built from the reference itself (``exact + k·(torch − exact)``), so
the error the ratchet sees is ``k`` times torch's own error, exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from xframe_bilstm.comparison import NOISE_FACTOR, measure_noise
from xframe_bilstm.frameworks import TorchFramework
from xframe_bilstm.reference import run_reference

TORCH_RUN = TorchFramework.run  # the real one, whatever a test patches in


def scaled_errors(factor: float) -> Callable[..., Any]:
    """A TorchFramework.run whose error against the reference is ``factor`` times torch's."""

    def run(self: Any, stack: Any, x: Any, spec: Any, *, initial_states: Any, lengths: Any):
        outputs, settings = TORCH_RUN(
            self, stack, x, spec, initial_states=initial_states, lengths=lengths
        )
        exact = run_reference(stack, x, initial_states=initial_states, lengths=lengths)
        return tuple(e + factor * (o - e) for o, e in zip(outputs, exact)), settings

    return run


def past_the_ratchet(ratchet: float, drifted: list[float]) -> Callable[..., Any]:
    """A TorchFramework.run whose error lands half way (geometrically) between the ratchet's
    limit and compare()'s tolerance, where that leaves room; it appends each error it made
    to ``drifted`` (and nothing for runs it left alone).

    The limit is ``ratchet`` times the larger of torch's error (the baseline a clean run
    records) and the reference's drift; the tolerance is ``NOISE_FACTOR`` times that drift.
    """

    def run(self: Any, stack: Any, x: Any, spec: Any, *, initial_states: Any, lengths: Any):
        outputs, settings = TORCH_RUN(
            self, stack, x, spec, initial_states=initial_states, lengths=lengths
        )
        exact = run_reference(stack, x, initial_states=initial_states, lengths=lengths)
        error = max(float(np.abs(o - e).max()) for o, e in zip(outputs, exact))
        noise = measure_noise(stack, x, initial_states=initial_states, lengths=lengths)
        tolerance = noise.tolerance(spec.epsilon)
        limit = ratchet * max(error, tolerance / NOISE_FACTOR)
        if limit * 1.5 > tolerance or error == 0:
            return outputs, settings
        target = math.sqrt(limit * tolerance)
        drifted.append(target)
        factor = target / error
        return tuple(e + factor * (o - e) for o, e in zip(outputs, exact)), settings

    return run
