"""The run at hand: the input, both sides' raw outputs by name, and the bounds every
hypothesis is judged by (the strict tolerance and the 10-bit-mantissa numerical bound).

:class:`Context` also runs candidate stacks through the float64 reference and measures how
far a candidate is from a target, so that every hypothesis measures the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..canonical import RecurrentStack, output_names
from ..comparison import derived_tolerance
from ..reference import run_reference
from .result import format_error


@dataclass(frozen=True)
class Context:
    """The input, the raw outputs by name and the bounds every hypothesis is judged by."""

    x: np.ndarray
    lengths: Any
    names: tuple[str, ...]
    expected: dict[str, np.ndarray]
    actual: dict[str, np.ndarray]
    strict_dtype: type[np.floating]
    tolerance: float
    bound: float
    before: float
    layout: RecurrentStack | None

    def tolerance_for(self, stack: RecurrentStack) -> float:
        """The strict tolerance for comparisons against ``stack``'s reference."""
        return derived_tolerance(stack, self.x, dtype=self.strict_dtype, lengths=self.lengths)

    def reference(self, stack: RecurrentStack, *, masked: bool = True) -> dict[str, np.ndarray]:
        arrays = run_reference(stack, self.x, lengths=self.lengths if masked else None)
        return dict(zip(output_names(stack), arrays))

    def error(self, target: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> float:
        """The largest difference over the compared names (inf on a missing name or shape)."""
        worst = 0.0
        for name in self.names:
            if name not in target or name not in candidate:
                return float("inf")
            worst = max(worst, max_diff(target[name], candidate[name]))
        return worst

    def evidence(self, after: float) -> str:
        return f"agree to {format_error(after)} (max error before: {format_error(self.before)})"


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    """The largest absolute difference (inf on a shape mismatch or a NaN)."""
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    difference = np.abs(a - b)
    return float(np.inf) if np.isnan(difference).any() else float(difference.max())


def tolerances(
    layout: RecurrentStack | None,
    x: np.ndarray,
    strict: type[np.floating],
    lengths: Any,
    expected: list[np.ndarray],
) -> tuple[float, float]:
    """(strict tolerance, numerical bound): the same noise measure at ``strict`` precision
    and at a 10-bit mantissa (float16's eps 2**-10 is TF32's)."""
    if layout is None:
        steps = x.shape[1]
        return (
            _fallback_tolerance(expected, strict, steps),
            _fallback_tolerance(expected, np.float16, steps),
        )
    return (
        derived_tolerance(layout, x, dtype=strict, lengths=lengths),
        derived_tolerance(layout, x, dtype=np.float16, lengths=lengths),
    )


def _fallback_tolerance(
    arrays: Sequence[np.ndarray], dtype: type[np.floating], steps: int
) -> float:
    """For two custom modules (no canonical form to measure noise with): a few ulps per step."""
    scale = max(max((float(np.max(np.abs(a), initial=0.0)) for a in arrays), default=0.0), 1.0)
    return 16.0 * float(np.finfo(dtype).eps) * scale * steps
