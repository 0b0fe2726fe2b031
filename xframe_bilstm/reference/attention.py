"""The reference of Keras's attention layers, written from their definitions.

``Attention`` (Luong) and ``AdditiveAttention`` (Bahdanau) score every query step against
every key step, soften the scores over the key steps and average the values with them;
``MultiHeadAttention`` does that per head on learned projections, then projects the heads
back. Masks follow Keras: a masked value (or key) step, or a later step under
``use_causal_mask``, scores -1e9 (so a row with every step masked attends to all of them
evenly, as float32 Keras computes it); ``Attention`` outputs zeros at masked query steps;
``MultiHeadAttention`` masks the query's rows too, and with ``masked_rows="zero"`` zeroes
the weights of every masked position after the softmax.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..graph import LayerRecord

# What Keras puts in place of a masked score (float32 and wider).
MASKED_SCORE = -1e9


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def causal(steps_query: int, steps_value: int) -> np.ndarray:
    """(Tq, Tv): query step i sees value steps j <= i.

    Example:
        >>> causal(2, 3).astype(int).tolist()
        [[1, 0, 0], [1, 1, 0]]
    """
    return np.arange(steps_query)[:, None] >= np.arange(steps_value)[None, :]


def score_mask(
    record: LayerRecord, query: np.ndarray, value: np.ndarray, masks: Sequence[np.ndarray | None]
) -> np.ndarray | None:
    """(B or 1, Tq, Tv) bool: which scores count, or None when every score does."""
    mask = None
    keys = masks[1:] if record.kind == "multi_head_attention" else masks[1:2]
    for key_mask in keys:  # Attention ignores the key's own mask
        if key_mask is not None:
            step = np.asarray(key_mask, bool)[:, None, :]
            mask = step if mask is None else mask & step
    if record.kind == "multi_head_attention" and masks[0] is not None:
        rows = np.asarray(masks[0], bool)[:, :, None]
        mask = rows if mask is None else mask & rows
    if record.options["use_causal_mask"]:
        lower = causal(query.shape[1], value.shape[1])[None]
        mask = lower if mask is None else mask & lower
    return mask


def _scores(record: LayerRecord, query: np.ndarray, key: np.ndarray, dtype: type) -> np.ndarray:
    score, weights = record.options["score"], record.weights
    scale: np.ndarray = np.asarray(weights.get("scale", 1.0), dtype)
    if score == "dot":
        return scale * (query @ np.swapaxes(key, -1, -2))
    summed = query[:, :, None, :] + key[:, None, :, :]  # (B, Tq, Tv, D)
    if score == "additive":
        return (scale * np.tanh(summed)).sum(axis=-1)
    weight: np.ndarray = np.asarray(weights["concat_score_weight"], dtype)
    return weight * np.tanh(scale * summed).sum(axis=-1)


def attention(
    record: LayerRecord,
    tensors: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    dtype: type,
) -> np.ndarray:
    """``Attention`` or ``AdditiveAttention`` of ``[query, value]`` or ``[query, value, key]``.

    Example:
        >>> record = LayerRecord("a", "attention", "Attention", ("q", "v"),
        ...                      {"score": "dot", "use_causal_mask": False})
        >>> q, v = np.array([[[1.0, 0.0]]]), np.array([[[1.0, 0.0], [0.0, 1.0]]])
        >>> np.round(attention(record, [q, v], [None, None], np.float64), 4).tolist()
        [[[0.7311, 0.2689]]]
    """
    query: np.ndarray = np.asarray(tensors[0], dtype)
    value: np.ndarray = np.asarray(tensors[1], dtype)
    key = np.asarray(tensors[2], dtype) if len(tensors) > 2 else value
    scores = _scores(record, query, key, dtype)
    mask = score_mask(record, query, value, masks)
    if mask is not None:
        scores = np.where(mask, scores, MASKED_SCORE)
    y = _softmax(scores) @ value
    if masks[0] is not None:
        y = np.where(np.asarray(masks[0], bool)[..., None], y, 0.0)
    return y.astype(dtype)


def _project(x: np.ndarray, record: LayerRecord, name: str, dtype: type) -> np.ndarray:
    """(B, T, D) through a (D, heads, dim) kernel: (B, T, heads, dim)."""
    y = np.einsum("btd,dnh->btnh", x, record.weights[f"{name}_kernel"].astype(dtype))
    bias = record.weights.get(f"{name}_bias")
    return y if bias is None else y + bias.astype(dtype)


def multi_head_attention(
    record: LayerRecord,
    tensors: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    dtype: type,
) -> np.ndarray:
    """``MultiHeadAttention(query, value[, key])`` over the time axis.

    Example:
        >>> eye = np.eye(2).reshape(2, 1, 2)
        >>> record = LayerRecord("m", "multi_head_attention", "MultiHeadAttention", ("q", "v"),
        ...     {"num_heads": 1, "key_dim": 2, "use_causal_mask": True, "masked_rows": "zero"},
        ...     {"query_kernel": eye, "key_kernel": eye, "value_kernel": eye,
        ...      "output_kernel": np.eye(2).reshape(1, 2, 2)})
        >>> x = np.array([[[1.0, 0.0], [0.0, 1.0]]])
        >>> np.round(multi_head_attention(record, [x, x], [None, None], np.float64), 4).tolist()
        [[[1.0, 0.0], [0.3302, 0.6698]]]
    """
    query: np.ndarray = np.asarray(tensors[0], dtype)
    value: np.ndarray = np.asarray(tensors[1], dtype)
    key = np.asarray(tensors[2], dtype) if len(tensors) > 2 else value
    q = _project(query, record, "query", dtype) / np.sqrt(
        np.asarray(record.options["key_dim"], dtype)
    )
    k = _project(key, record, "key", dtype)
    v = _project(value, record, "value", dtype)
    scores = np.einsum("btnh,bsnh->bnts", q, k)
    mask = score_mask(record, query, value, masks)
    if mask is not None:
        scores = np.where(mask[:, None], scores, MASKED_SCORE)
    weights = _softmax(scores)
    if mask is not None and record.options["masked_rows"] == "zero":
        weights = np.where(mask[:, None], weights, 0.0)
    context = np.einsum("bnts,bsnh->btnh", weights, v)
    y = np.einsum("btnh,nho->bto", context, record.weights["output_kernel"].astype(dtype))
    bias = record.weights.get("output_bias")
    return (y if bias is None else y + bias.astype(dtype)).astype(dtype)


def run_attention(
    record: LayerRecord,
    tensors: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    dtype: type,
) -> np.ndarray:
    """The output of an attention record (its mask is the query's)."""
    if record.kind == "multi_head_attention":
        return multi_head_attention(record, tensors, masks, dtype)
    return attention(record, tensors, masks, dtype)


__all__ = ["MASKED_SCORE", "attention", "causal", "multi_head_attention", "run_attention"]
