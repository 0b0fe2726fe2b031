"""The reference of a ``where`` record: a constant written where a condition holds.

A captured ``scores.masked_fill(ids.unsqueeze(1) == 0, -1e9)`` or ``torch.where(mask,
scores, float("-inf"))`` is one ``where`` record: its condition compares a tensor of the
model (``source``: the token ids, say) with a number, after inserting axes of size 1 so
that it broadcasts to ``x``; the output is ``fill`` where the condition holds and ``x``
elsewhere. The comparison is made in float64 on every runner, so token ids and float
tensors compare alike.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

# Each comparison a condition may make, and the one that holds exactly where it does not.
COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}
NEGATED = {"eq": "ne", "ne": "eq", "lt": "ge", "ge": "lt", "gt": "le", "le": "gt"}


def condition(options: Mapping[str, Any], source: np.ndarray) -> np.ndarray:
    """Where a ``where`` record writes its fill: ``expand_dims(source, axes) <compare> value``.

    Example:
        >>> options = {"compare": "ne", "value": 0.0, "axes": (1,)}
        >>> condition(options, np.array([[3, 0]])).tolist()
        [[[True, False]]]
    """
    axes = tuple(int(axis) for axis in options["axes"])
    compared = np.asarray(source, dtype=np.float64)
    if axes:
        compared = np.expand_dims(compared, axes)
    return np.asarray(COMPARISONS[str(options["compare"])](compared, float(options["value"])))


def run_where(options: Mapping[str, Any], tensors: Sequence[np.ndarray], dtype: type) -> np.ndarray:
    """The output of a ``where`` record on its inputs ``(x, source)``.

    Example:
        >>> options = {"compare": "eq", "value": 0.0, "fill": float("-inf"), "axes": (1,)}
        >>> scores, ids = np.ones((1, 2, 2)), np.array([[5, 0]])
        >>> run_where(options, [scores, ids], np.float64).tolist()
        [[[1.0, -inf], [1.0, -inf]]]
    """
    x: np.ndarray = np.asarray(tensors[0]).astype(dtype)
    where = condition(options, tensors[1])
    return np.where(where, np.asarray(float(options["fill"]), dtype=dtype), x).astype(dtype)


__all__ = ["COMPARISONS", "NEGATED", "condition", "run_where"]
