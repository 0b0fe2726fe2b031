"""The reference of a ``where`` record: a constant written where a condition holds.

A captured ``scores.masked_fill(ids.unsqueeze(1) == 0, -1e9)`` or ``torch.where(mask,
scores, float("-inf"))`` is one ``where`` record: its condition compares a tensor of the
model (``source``: the token ids, say) with a number, after inserting axes of size 1 so
that it broadcasts to ``x``; the output is ``fill`` where the condition holds and ``x``
elsewhere. The comparison is made in float64 on every runner, so token ids and float
tensors compare alike.

A mask built from several comparisons (``(ids != 0) & (ids != 2)``, ``a | b``, ``~m``,
``m.unsqueeze(1) & m.unsqueeze(2)``) keeps its comparisons as *terms* under an option
``condition``: a term ``{"compare", "value", "axes", "input"}`` (``input`` counts the record's
inputs, ``x`` being 0) or ``{"op": "and" | "or", "args": [...]}``. Negations are pushed down
to the comparisons, so no ``not`` remains. A record without ``condition`` has one term, the
options ``compare``, ``value`` and ``axes`` on input 1.

With an option ``otherwise`` (a number), the record is a mask as numbers (``mask.float()``,
``torch.where(mask, 1.0, 0.0)``): ``fill`` where the condition holds, ``otherwise``
elsewhere, shaped as the condition; its input 0 is then its first source again, unread.
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


def expression(options: Mapping[str, Any]) -> Mapping[str, Any]:
    """The condition of a ``where`` record as terms (see the module's docstring).

    Example:
        >>> expression({"compare": "eq", "value": 0.0, "fill": 1.0, "axes": (1,)})
        {'compare': 'eq', 'value': 0.0, 'axes': (1,), 'input': 1}
    """
    if "condition" in options:
        return options["condition"]
    return {
        "compare": options["compare"],
        "value": options["value"],
        "axes": tuple(options["axes"]),
        "input": 1,
    }


def evaluate(
    term: Mapping[str, Any],
    leaf: Callable[[Mapping[str, Any], int], Any],
    both: Callable[[str, Any, Any], Any],
) -> Any:
    """Compute a condition with any framework: ``leaf(term, input)`` computes one comparison,
    ``both("and" | "or", a, b)`` combines two.

    Raises:
        ValueError: a term is neither a comparison nor ``and``/``or`` of terms.
    """
    if "op" not in term:
        return leaf(term, int(term["input"]))
    op, parts = str(term["op"]), list(term["args"])
    if op not in ("and", "or") or len(parts) < 2:
        raise ValueError(f"a where condition combines terms with 'and' or 'or', not {op!r}")
    result = evaluate(parts[0], leaf, both)
    for part in parts[1:]:
        result = both(op, result, evaluate(part, leaf, both))
    return result


def run_where(options: Mapping[str, Any], tensors: Sequence[np.ndarray], dtype: type) -> np.ndarray:
    """The output of a ``where`` record on its inputs ``(x, source, ...)``.

    Example:
        >>> options = {"compare": "eq", "value": 0.0, "fill": float("-inf"), "axes": (1,)}
        >>> scores, ids = np.ones((1, 2, 2)), np.array([[5, 0]])
        >>> run_where(options, [scores, ids], np.float64).tolist()
        [[[1.0, -inf], [1.0, -inf]]]
        >>> both = {"op": "or", "args": [
        ...     {"compare": "eq", "value": 0.0, "axes": (1,), "input": 1},
        ...     {"compare": "eq", "value": 0.0, "axes": (2,), "input": 1}]}
        >>> run_where({"fill": -1.0, "condition": both}, [scores, ids], np.float64).tolist()
        [[[1.0, -1.0], [-1.0, -1.0]]]
    """
    where = evaluate(
        expression(options),
        lambda term, index: condition(term, tensors[index]),
        lambda op, a, b: np.logical_and(a, b) if op == "and" else np.logical_or(a, b),
    )
    fill: np.ndarray = np.asarray(float(options["fill"]), dtype=dtype)
    if "otherwise" in options:  # a mask as numbers, shaped as the condition
        return np.where(where, fill, np.asarray(float(options["otherwise"]), dtype=dtype))
    x: np.ndarray = np.asarray(tensors[0]).astype(dtype)
    return np.where(where, fill, x).astype(dtype)


__all__ = ["COMPARISONS", "NEGATED", "condition", "evaluate", "expression", "run_where"]
