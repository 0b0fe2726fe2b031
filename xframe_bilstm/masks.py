"""Right-padded lengths: the one place they are checked and turned into masks.

Every framework takes padding the same way: ``lengths`` (B,), the number of valid steps at
the start of each row, each in 1..T. A Keras mask of a right-padded batch is
``t < lengths[b]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import WeightShapeError


def check_lengths(lengths: Any, batch: int, steps: int) -> np.ndarray:
    """``lengths`` as an int64 array (B,), or an error naming what is wrong with it.

    Example:
        >>> check_lengths([3, 1], batch=2, steps=3).tolist()
        [3, 1]
        >>> check_lengths([4, 1], batch=2, steps=3)
        Traceback (most recent call last):
        ...
        xframe_bilstm.errors.WeightShapeError: lengths: each must be in 1..3 ... got [4, 1]
    """
    values = np.asarray(lengths)
    if values.shape != (batch,) or not np.issubdtype(values.dtype, np.integer):
        raise WeightShapeError(
            f"lengths: expected {batch} integers (one per batch row), got {values.dtype} "
            f"array of shape {values.shape}"
        )
    if values.min() < 1 or values.max() > steps:
        raise WeightShapeError(
            f"lengths: each must be in 1..{steps} (the number of steps), got {values.tolist()}"
        )
    return values.astype(np.int64)


def mask_from_counts(counts: Any, batch: int, steps: int) -> np.ndarray:
    """:func:`mask_from_lengths` of the lengths a tensor of a graph holds: an input's
    integers, or counts the graph computed itself, whole numbers of its float dtype (a
    tagger's ``(ids != 0).sum(1)``).

    Example:
        >>> mask_from_counts(np.array([2.0, 1.0]), batch=2, steps=3).astype(int).tolist()
        [[1, 1, 0], [1, 0, 0]]
    """
    values = np.asarray(counts)
    if np.issubdtype(values.dtype, np.floating) and np.all(values == np.round(values)):
        values = values.astype(np.int64)
    return mask_from_lengths(values, batch, steps)


def longest_first(batch: int, steps: int) -> np.ndarray:
    """Lengths of ``batch`` right-padded rows, longest first: the first row full, each next
    two steps shorter, down to 1.

    Example:
        >>> longest_first(4, 5).tolist()
        [5, 3, 1, 1]
    """
    return np.array([max(1, steps - 2 * row) for row in range(batch)], dtype=np.int64)


def mask_from_lengths(lengths: Any, batch: int, steps: int) -> np.ndarray:
    """The (B, T) boolean mask of right-padded rows: True on valid steps.

    Example:
        >>> mask_from_lengths([2, 1], batch=2, steps=3).astype(int).tolist()
        [[1, 1, 0], [1, 0, 0]]
    """
    values = check_lengths(lengths, batch, steps)
    return np.arange(steps)[None, :] < values[:, None]
