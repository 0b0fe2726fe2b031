"""What :func:`~xframe_bilstm.diagnosis.diagnose` returns, and what its hypotheses report.

:data:`CODES` are the stable cause names, :class:`Diagnosis` the verdict, :class:`Finding`
one cause a hypothesis found, and :func:`format_error` how every message prints a number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..comparison import Comparison

CODES = (
    "equivalent",
    "numerical_only",
    "weights_differ",
    "backward_not_reversed",
    "directions_swapped",
    "gate_order",
    "bias_double_counted",
    "bias_missing",
    "kernel_not_transposed",
    "activation_mismatch",
    "gru_reset_after_mismatch",
    "final_state_from_last_output",
    "padding_semantics",
    "unknown",
)


@dataclass(frozen=True)
class Diagnosis:
    """Why ``actual`` does (not) compute what ``expected`` computes.

    Attributes:
        code: the primary cause, one of :data:`CODES`.
        causes: every cause that applies, the primary first.
        message: one sentence naming the cause with its evidence.
        max_abs_error: the largest absolute difference of the raw outputs, before any fix.
        comparison: the comparison of the raw outputs.
        error_after_fix: the largest difference once the primary cause is undone, if known.
        details: one sentence per cause, in the order of ``causes``.

    Example:
        >>> import numpy as np
        >>> from xframe_bilstm.comparison import compare_outputs
        >>> same = compare_outputs(["output"], [np.zeros(2)], [np.zeros(2)], atol=1e-7)
        >>> result = Diagnosis("equivalent", ("equivalent",), "they agree", 0.0, same)
        >>> bool(result), result.to_dict()["code"]
        (True, 'equivalent')
    """

    code: str
    causes: tuple[str, ...]
    message: str
    max_abs_error: float
    comparison: Comparison
    error_after_fix: float | None = None
    details: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.code in ("equivalent", "numerical_only")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (the comparison reduced to one entry per array)."""
        return {
            "code": self.code,
            "causes": list(self.causes),
            "message": self.message,
            "details": list(self.details),
            "max_abs_error": self.max_abs_error,
            "error_after_fix": self.error_after_fix,
            "comparison": {
                "label": self.comparison.label,
                "passed": bool(self.comparison),
                "arrays": [
                    {
                        "name": array.name,
                        "shape": list(array.shape),
                        "max_abs_error": array.max_abs_error,
                        "atol": array.atol,
                        "passed": array.passed,
                        "problem": array.problem,
                    }
                    for array in self.comparison.arrays
                ],
            },
        }


def format_error(value: float) -> str:
    """An error as messages print it: two significant digits, short exponent.

    Example:
        >>> format_error(3.14e-8), format_error(0.4123), format_error(float("inf"))
        ('3.1e-8', '0.41', 'inf')
    """
    text = f"{value:.2g}"
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + m.group(1).replace("+", "") + m.group(2), text)


@dataclass(frozen=True)
class Finding:
    """One cause a hypothesis found: its code, the sentence with its evidence, and the
    largest difference once it is undone (None when it cannot be undone and measured)."""

    code: str
    message: str
    error_after: float | None = None
