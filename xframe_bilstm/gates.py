"""Named gate orders and the one function that moves gate blocks between them.

A gate order is a string with one letter per gate block, e.g. ``"ifco"`` for Keras and
PyTorch LSTMs, ``"iofc"`` for ONNX LSTMs, ``"zrh"`` for Keras and ONNX GRUs and ``"rzn"``
for PyTorch GRUs. PyTorch calls the LSTM candidate ``g`` and the GRU candidate ``n``; both
are synonyms of ``c`` and ``h`` here, so ``"ifgo"`` equals ``"ifco"``.
"""

from __future__ import annotations

import numpy as np

from .errors import WeightShapeError

# Canonical gate order of each cell kind (Keras's).
CANONICAL_ORDER = {"lstm": "ifco", "gru": "zrh", "simple_rnn": "h"}

# Native orders of the frameworks, by cell kind.
TORCH_ORDER = {"lstm": "ifgo", "gru": "rzn", "simple_rnn": "h"}
ONNX_ORDER = {"lstm": "iofc", "gru": "zrh", "simple_rnn": "h"}

_SYNONYMS = str.maketrans({"g": "c", "n": "h"})


def _normalize(order: str) -> str:
    canonical = order.translate(_SYNONYMS)
    if len(set(canonical)) != len(canonical):
        raise ValueError(f"gate order {order!r} names a gate twice")
    return canonical


def reorder_gates(array: np.ndarray, source: str, target: str, axis: int = -1) -> np.ndarray:
    """Move the gate blocks of ``array`` along ``axis`` from order ``source`` to ``target``.

    Args:
        array: weights or biases whose ``axis`` holds ``len(source)`` equal gate blocks.
        source: the order the blocks are in, e.g. ``"ifco"``.
        target: the order wanted, a permutation of ``source``, e.g. ``"iofc"``.
        axis: the axis that holds the stacked gates.

    Returns:
        The blocks in ``target`` order: a new array, or ``array`` itself when the two
        orders are the same.

    Example:
        >>> reorder_gates(np.array([1, 2, 3, 4]), "ifco", "iofc").tolist()
        [1, 4, 2, 3]
        >>> reorder_gates(np.arange(6).reshape(2, 3), "zrh", "rzn", axis=1).tolist()
        [[1, 0, 2], [4, 3, 5]]
    """
    src, dst = _normalize(source), _normalize(target)
    if sorted(src) != sorted(dst):
        raise ValueError(f"gate orders {source!r} and {target!r} name different gates")
    if src == dst:
        return array  # the same order: nothing to move, nothing to copy
    size = array.shape[axis]
    if size % len(src):
        raise WeightShapeError(
            f"axis {axis} has size {size}, which does not split into {len(src)} gate blocks "
            f"of order {source!r}"
        )
    blocks = dict(zip(src, np.split(array, len(src), axis=axis)))
    return np.concatenate([blocks[gate] for gate in dst], axis=axis)
