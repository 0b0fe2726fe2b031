"""The reference of merges, permutes, repeats, ``TimeDistributed`` and activation layers.

Written from the Keras layers' definitions, in numpy, independently of the torch port.
A merge of masked inputs follows the Keras version that saved the model: Keras 3's
``Multiply`` counts masked values as 1 (and zeroes steps no input keeps when every input
is masked), its ``Maximum``/``Minimum`` take the other input's value where one input is
masked; Keras 2 merges ignore masks in their values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import UnsupportedFeatureError
from ..graph import LayerRecord
from ..time_distributed import check_time_distributed, inner_graph

Mask = np.ndarray | None
GraphRunner = Callable[..., tuple[np.ndarray, ...]]  # (graph, inputs, *, dtype) -> outputs


def combine_masks(
    tensors: Sequence[np.ndarray], masks: Sequence[Mask], how: str, axis: int | None = None
) -> Mask:
    """The mask of a layer joining ``tensors``: a step kept where any/all inputs keep it;
    for sequences concatenated over time (``axis`` 1), their masks one after another.

    An input without a mask keeps every step; no input with a mask gives no mask.

    Example:
        >>> x = np.zeros((1, 2, 3))
        >>> combine_masks([x, x], [np.array([[True, False]]), None], "all").tolist()
        [[True, False]]
    """
    if all(mask is None for mask in masks):
        return None
    steps = [np.ones(t.shape[:2], bool) if m is None else m for t, m in zip(tensors, masks)]
    if _joined_over_time(tensors, axis):  # the steps follow one another: so do their masks
        return np.concatenate(steps, axis=1)
    full = np.stack(steps)
    return np.asarray(full.any(axis=0) if how == "any" else full.all(axis=0))


def _joined_over_time(tensors: Sequence[Any], axis: int | None) -> bool:
    """Whether a concatenation along ``axis`` joins sequences (B, T, F) over their steps."""
    rank = len(tensors[0].shape)
    return axis is not None and rank == 3 and axis in (1, -2)


def _same_rank(tensors: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Lower-rank inputs get axes inserted after the batch axis, as Keras's merges do."""
    rank = max(t.ndim for t in tensors)
    return [t.reshape(t.shape[:1] + (1,) * (rank - t.ndim) + t.shape[1:]) for t in tensors]


def _steps(mask: Mask, x: np.ndarray) -> np.ndarray | None:
    return None if mask is None else np.broadcast_to(mask[..., None], x.shape)


def _extreme(op: str, tensors: list[np.ndarray], masks: Sequence[Mask]) -> np.ndarray:
    """Keras 3's masked Maximum/Minimum: a masked value is replaced by the other side's."""
    function = np.maximum if op == "maximum" else np.minimum
    output, output_mask = tensors[0], _steps(masks[0], tensors[0])
    for x, mask in zip(tensors[1:], masks[1:]):
        mask = _steps(mask, x)
        if mask is not None:
            x = np.where(mask, x, output)
        if output_mask is not None:
            output = np.where(output_mask, output, x)
        output_mask = None if mask is None or output_mask is None else output_mask | mask
        output = function(output, x)
    return output


def _multiply(tensors: list[np.ndarray], masks: Sequence[Mask]) -> np.ndarray:
    """Keras 3's masked Multiply: masked values count as 1; with every input masked, steps
    that no input keeps are 0."""
    output, kept = None, None
    for x, mask in zip(tensors, masks):
        steps = _steps(mask, x)
        if steps is not None:
            x = np.where(steps, x, 1.0)
            kept = steps if kept is None else kept | steps
        output = x if output is None else output * x
    assert output is not None
    if all(mask is not None for mask in masks) and kept is not None:
        output = np.where(kept, output, 0.0)
    return output


def merge(record: LayerRecord, tensors: Sequence[np.ndarray], masks: Sequence[Mask]) -> np.ndarray:
    """The output of a merge layer."""
    op = str(record.options["op"])
    arrays = _same_rank(tensors)
    keras3_masks = record.options["mask_combine"] == "any" and any(m is not None for m in masks)
    if op in ("maximum", "minimum"):
        if keras3_masks:
            return _extreme(op, arrays, masks)
        function = np.maximum if op == "maximum" else np.minimum
        return np.asarray(function.reduce(np.stack(np.broadcast_arrays(*arrays)), axis=0))
    if op == "multiply" and keras3_masks:
        return _multiply(arrays, masks)
    if op == "subtract":
        return arrays[0] - arrays[1]
    if op == "divide":
        return arrays[0] / arrays[1]
    total = arrays[0]
    for x in arrays[1:]:
        total = total * x if op == "multiply" else total + x
    return total / len(arrays) if op == "average" else total


def _relu(record: LayerRecord, x: np.ndarray) -> np.ndarray:
    """Keras's ``relu(x, negative_slope, max_value, threshold)``."""
    options = record.options
    threshold, slope = float(options["threshold"]), float(options["negative_slope"])
    y = np.where(x > threshold, x, 0.0) if threshold else np.maximum(x, 0.0)
    if options["max_value"] is not None:
        y = np.clip(y, 0.0, float(options["max_value"]))
    return y - slope * np.maximum(threshold - x, 0.0) if slope else y


def _softmax(record: LayerRecord, x: np.ndarray) -> np.ndarray:
    axis = int(record.options["axis"])
    shifted = x - x.max(axis=axis, keepdims=True)
    if record.options["log"]:
        return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def _time_distributed(
    record: LayerRecord, x: np.ndarray, mask: Mask, dtype: type, run_graph: GraphRunner
) -> np.ndarray:
    check_time_distributed(record, mask is not None)
    merged = x.reshape((x.shape[0] * x.shape[1], *x.shape[2:]))
    (y,) = run_graph(inner_graph(record, x.ndim), [merged], dtype=dtype)
    return y.reshape((x.shape[0], x.shape[1], *y.shape[1:]))


def run_shape_layer(
    record: LayerRecord,
    tensors: Sequence[np.ndarray],
    masks: Sequence[Mask],
    dtype: type,
    run_graph: GraphRunner,
) -> tuple[np.ndarray, Mask]:
    """(output, output mask) of one layer whose kind this module runs.

    ``run_graph`` runs the one-layer model a ``TimeDistributed`` wraps
    (:func:`~xframe_bilstm.reference.run_model_reference`).

    Example:
        >>> record = LayerRecord("p", "permute", "Permute", ("x",), {"dims": (2, 1)})
        >>> run_shape_layer(record, [np.zeros((1, 2, 3))], [None], np.float64, None)[0].shape
        (1, 3, 2)
    """
    kind, options = record.kind, record.options
    if kind == "merge":
        y = merge(record, [t.astype(dtype) for t in tensors], masks)
        return y, combine_masks(tensors, masks, str(options["mask_combine"]))
    x, mask = tensors[0], masks[0]
    if kind == "permute":
        return np.transpose(x, (0, *options["dims"])), None
    if kind == "repeat_vector":
        return np.repeat(x[:, None, :], int(options["n"]), axis=1), None
    if kind == "time_distributed":
        return _time_distributed(record, x, mask, dtype, run_graph), mask
    x = x.astype(dtype)
    if kind == "relu":
        return _relu(record, x), mask
    if kind == "elu":
        return np.where(x > 0, x, float(options["alpha"]) * np.expm1(np.minimum(x, 0))), mask
    if kind == "prelu":
        alpha: np.ndarray = record.weights["alpha"].astype(dtype)
        return np.maximum(x, 0) - alpha * np.maximum(-x, 0), mask
    if kind == "softmax":
        if mask is not None:
            raise UnsupportedFeatureError(
                f"layer {record.name!r} ({record.class_name}) reads a mask of the steps, which "
                "Keras's Softmax applies along its last axes; remove the mask before it"
            )
        return _softmax(record, x), mask
    raise UnsupportedFeatureError(f"layer {record.name!r}: no reference for kind {kind!r}")


__all__ = ["combine_masks", "merge", "run_shape_layer"]
