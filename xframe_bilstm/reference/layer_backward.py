"""The backward of the non-recurrent layers of a model graph, written like their forward.

Each kind here runs its forward as :func:`~xframe_bilstm.reference.run_model_reference`
does and returns, beside the output, its vector-Jacobian product: from the gradient ``g``
of a loss with respect to the output, the gradients with respect to each input (None for
integer token ids, which have none) and to each weight, by the weight's name in the
record (``kernel``, ``bias``, ``embeddings``, ``alpha``).

The equations (``x`` the input, ``y`` the output, ``g = ∂L/∂y``):

- ``embedding``: ``y = E[ids]``, ``∂L/∂E[v] = Σ_{ids = v} g`` (repeated ids add up).
- ``dense``: ``z = x K + b``, ``y = act(z)``: ``∂L/∂z = act'ᵀ g``, ``∂L/∂K = xᵀ ∂L/∂z``,
  ``∂L/∂b = Σ ∂L/∂z`` over every axis but the last, ``∂L/∂x = ∂L/∂z Kᵀ``.
- ``softmax``: ``∂L/∂z = y ⊙ (g − Σ g ⊙ y)`` along its axis.
- shape layers (``flatten``, ``reshape``, ``permute``, ``concatenate``) move ``g`` back.
- merges: ``add`` passes ``g`` to each input, ``subtract`` ``±g``, ``average`` ``g/n``,
  ``multiply`` ``g`` times the product of the other inputs.
- ``global_pool``: the average spreads ``g`` evenly over the (valid) steps; the maximum
  gives it to the first position holding the maximum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import UnsupportedFeatureError
from ..graph import LayerRecord
from ..masks import mask_from_counts
from .activation_grads import activation_vjp
from .convolution import activate
from .shape_layers import Mask, combine_masks
from .tensor_ops import held_rows, merged_rows

# From the output's gradient: the inputs' gradients (None: no gradient, token ids) and
# the weights' gradients by weight name.
Vjp = Callable[[Any], tuple[list[np.ndarray | None], dict[str, np.ndarray]]]
Step = tuple[np.ndarray, Mask, Vjp]

# The kinds whose backward this module writes (``recurrent`` and ``input`` are the graph's).
BACKWARD_KINDS = (
    "embedding",
    "masking",
    "identity",
    "lengths_mask",
    "end_mask",
    "time_first",
    "merged_rows",
    "broadcast",
    "valid_steps",
    "dense",
    "activation",
    "flatten",
    "reshape",
    "permute",
    "concatenate",
    "merge",
    "global_pool",
    "time_distributed",
    "relu",
    "elu",
    "prelu",
    "softmax",
)


def _softmax_vjp(y: np.ndarray, g: np.ndarray, axis: int = -1) -> np.ndarray:
    return y * (g - (g * y).sum(axis=axis, keepdims=True))


def activation_backward(name: str, z: np.ndarray, y: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``∂L/∂z`` of ``y = act(z)``, softmax (over the last axis) included."""
    if name == "softmax":
        return _softmax_vjp(y, g)
    return activation_vjp(name)(z, y, g)


def _dense(record: LayerRecord, x: np.ndarray, dtype: type) -> tuple[np.ndarray, Vjp]:
    kernel: np.ndarray = record.weights["kernel"].astype(dtype)
    x = x.astype(dtype)
    z = x @ kernel
    if "bias" in record.weights:
        z = z + record.weights["bias"].astype(dtype)
    name = str(record.options["activation"])
    y = activate(name, z)

    def vjp(g: np.ndarray) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        d_z = activation_backward(name, z, y, g)
        flat = d_z.reshape(-1, d_z.shape[-1])
        weights = {"kernel": x.reshape(-1, x.shape[-1]).T @ flat}
        if "bias" in record.weights:
            weights["bias"] = flat.sum(axis=0)
        return [d_z @ kernel.T], weights

    return y, vjp


def _embedding(record: LayerRecord, ids: np.ndarray, dtype: type) -> tuple[np.ndarray, Vjp]:
    table: np.ndarray = record.weights["embeddings"].astype(dtype)
    ids = np.asarray(ids)

    def vjp(g: np.ndarray) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        d_table = np.zeros_like(table)
        np.add.at(d_table, ids.reshape(-1), g.reshape(-1, table.shape[-1]))
        return [None], {"embeddings": d_table}

    return table[ids], vjp


def _global_pool(record: LayerRecord, x: np.ndarray, mask: Mask) -> tuple[np.ndarray, Vjp]:
    from .normpool import global_pool

    options = record.options
    channels_first = options.get("data_format", "channels_last") == "channels_first"
    axes = tuple(range(2, x.ndim)) if channels_first else tuple(range(1, x.ndim - 1))
    y = global_pool(options, x, mask)
    if options["op"] == "max":
        # The first position of the maximum over the pooled axes gets the gradient.
        moved = np.moveaxis(x, axes, tuple(range(1, 1 + len(axes))))
        flat = moved.reshape(x.shape[0], -1, *moved.shape[1 + len(axes) :])
        first = np.zeros_like(flat)
        np.put_along_axis(first, flat.argmax(axis=1)[:, None], 1.0, axis=1)
        weight = np.moveaxis(first.reshape(moved.shape), tuple(range(1, 1 + len(axes))), axes)
    else:
        valid = np.ones(x.shape, x.dtype)
        if mask is not None:
            valid = valid * np.expand_dims(mask, 1 if channels_first else -1)
        with np.errstate(invalid="ignore", divide="ignore"):
            weight = valid / valid.sum(axis=axes, keepdims=True)

    def vjp(g: np.ndarray) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        g = g if options["keepdims"] else np.expand_dims(g, axes)
        return [np.nan_to_num(weight * g)], {}

    return y, vjp


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``g`` summed back to ``shape`` over the axes a merge broadcast (Keras's rank fill)."""
    g = g.sum(axis=tuple(range(g.ndim - len(shape)))) if g.ndim > len(shape) else g
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    summed = g.sum(axis=axes, keepdims=True) if axes else g
    return summed.reshape(shape)


def _merge(
    record: LayerRecord, tensors: Sequence[np.ndarray], masks: Sequence[Mask], dtype: type
) -> tuple[np.ndarray, Vjp]:
    from .shape_layers import _same_rank, merge

    op = str(record.options["op"])
    keras3_masks = record.options["mask_combine"] == "any" and any(m is not None for m in masks)
    if op in ("maximum", "minimum") or (op == "multiply" and keras3_masks):
        raise UnsupportedFeatureError(
            f"layer {record.name!r} ({record.class_name}): the gradient reference has no "
            f"backward for a {op} merge{' of masked inputs' if keras3_masks else ''}; "
            "it differentiates add, subtract, average, multiply and divide"
        )
    arrays: list[np.ndarray] = [t.astype(dtype) for t in tensors]
    same = _same_rank(arrays)
    y = merge(record, arrays, masks)

    def vjp(g: np.ndarray) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        grads: list[np.ndarray] = []
        for index, x in enumerate(same):
            if op == "multiply":
                others = [other for i, other in enumerate(same) if i != index]
                d = g * np.prod(np.broadcast_arrays(*others, g)[:-1], axis=0)
            elif op == "subtract":
                d = g if index == 0 else -g
            elif op == "divide":  # y = a / b: dy/da = 1 / b, dy/db = -a / b**2 = -y / b
                d = g / same[1] if index == 0 else -g * y / same[1]
            else:
                d = g / len(same) if op == "average" else g
            grads.append(_unbroadcast(d, x.shape).reshape(arrays[index].shape))
        return list(grads), {}

    return y, vjp


def _relu_vjp(record: LayerRecord, x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Keras's ``relu(x, negative_slope, max_value, threshold)``, derived piece by piece."""
    options = record.options
    threshold, slope = float(options["threshold"]), float(options["negative_slope"])
    above = x > threshold
    if options["max_value"] is not None:
        above = above & (x < float(options["max_value"]))
    below = x < threshold
    return lambda g: g * above + slope * g * below


def _elementwise(record: LayerRecord, x: np.ndarray, y: np.ndarray) -> Vjp:
    """The backward of the one-input activation layers."""
    kind, options = record.kind, record.options

    def vjp(g: np.ndarray) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        if kind == "relu":
            return [_relu_vjp(record, x)(g)], {}
        if kind == "elu":
            rate = float(options["alpha"])
            return [g * np.where(x > 0, 1.0, rate * np.exp(np.minimum(x, 0)))], {}
        if kind == "prelu":
            alpha = record.weights["alpha"].astype(x.dtype)
            d_alpha = _unbroadcast(-g * np.maximum(-x, 0), (1, *alpha.shape))[0]
            return [g * np.where(x > 0, 1.0, alpha)], {"alpha": d_alpha}
        if kind == "softmax":
            if options["log"]:
                soft = np.exp(y)
                d = g - soft * g.sum(axis=int(options["axis"]), keepdims=True)
                return [d], {}
            return [_softmax_vjp(y, g, int(options["axis"]))], {}
        name = str(options["activation"])  # "activation"
        return [activation_backward(name, x, y, g)], {}

    return vjp


def _moved(record: LayerRecord, x: np.ndarray, y: np.ndarray) -> Vjp:
    """The backward of the layers that only move values: the gradient moved back."""
    kind = record.kind

    def vjp(g: np.ndarray) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        if kind == "permute":
            order = (0, *record.options["dims"])
            return [np.transpose(g, np.argsort(order))], {}
        return [g.reshape(x.shape)], {}

    return vjp


def _concatenate(record: LayerRecord, tensors: Sequence[np.ndarray], masks: Sequence[Mask]) -> Step:
    axis = int(record.options["axis"])
    y = np.concatenate(tensors, axis=axis)
    mask = combine_masks(tensors, masks, str(record.options["mask_combine"]), axis)
    bounds = np.cumsum([t.shape[axis] for t in tensors])[:-1]

    def vjp(g: np.ndarray) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        return list(np.split(g, bounds, axis=axis)), {}

    return y, mask, vjp


def _no_graph(*_: Any, **__: Any) -> tuple[np.ndarray, ...]:  # pragma: no cover
    raise AssertionError("activation layers run no inner graph")


def layer_step(
    record: LayerRecord,
    tensors: Sequence[np.ndarray],
    masks: Sequence[Mask],
    dtype: type,
    time_distributed: Callable[[LayerRecord, np.ndarray, Mask, type], Step],
) -> Step:
    """Run one non-recurrent layer: (output, output mask, its vector-Jacobian product).

    ``time_distributed`` runs a ``TimeDistributed`` wrapper (its inner layer is a graph).

    Example:
        >>> record = LayerRecord("d", "dense", "Dense", ("x",),
        ...     {"activation": "linear", "time_distributed": False},
        ...     {"kernel": np.array([[2.0], [3.0]]), "bias": np.array([1.0])})
        >>> y, _, vjp = layer_step(record, [np.array([[1.0, 1.0]])], [None], np.float64, None)
        >>> y.tolist(), vjp(np.ones((1, 1)))[1]["kernel"].tolist()
        ([[6.0]], [[1.0], [1.0]])
    """
    kind, options = record.kind, record.options
    x, mask = tensors[0], masks[0]
    kept = mask if record.mask_rule == "keep" else None
    if kind == "embedding":
        y, vjp = _embedding(record, x, dtype)
        return y, ((np.asarray(x) != 0) if options["mask_zero"] else None), vjp
    if kind == "concatenate":
        return _concatenate(record, [t.astype(dtype) for t in tensors], masks)
    if kind == "merge":
        y, vjp = _merge(record, tensors, masks, dtype)
        return y, combine_masks(tensors, masks, str(options["mask_combine"])), vjp
    if kind == "time_distributed":
        return time_distributed(record, x, mask, dtype)
    x = x.astype(dtype)
    if kind == "masking":
        keep = np.asarray(np.any(x != options["mask_value"], axis=-1))
        return np.where(keep[..., None], x, 0), keep, lambda g: ([g * keep[..., None]], {})
    if kind == "identity":
        return x, kept, lambda g: ([g], {})
    if kind == "end_mask":
        return x, None, lambda g: ([g], {})
    if kind == "time_first":
        return np.swapaxes(x, 0, 1), None, lambda g: ([np.swapaxes(g, 0, 1)], {})
    if kind == "merged_rows":
        time_first = bool(options["time_first"])
        apart = (x.shape[1], x.shape[0]) if time_first else x.shape[:2]

        def rows_apart(g: np.ndarray) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
            g = g.reshape(*apart, *g.shape[1:])
            return [np.swapaxes(g, 0, 1) if time_first else g], {}

        return merged_rows(x, time_first), None, rows_apart
    if kind == "broadcast":  # its input gives only the batch size (and steps)
        table: np.ndarray = record.weights["value"].astype(dtype)
        value = held_rows(table, record.options, x.shape)
        y = np.broadcast_to(value, (x.shape[0], *value.shape)).copy()

        def rows_back(g: np.ndarray) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
            if value is table:
                return [None], {"value": g.sum(axis=0)}
            grad = np.zeros_like(table)
            grad[: len(value)] = g.sum(axis=0)  # the rows past the steps are not read
            return [None], {"value": grad}

        return y, None, rows_back
    if kind == "valid_steps":  # numbers of the lengths alone: no gradient to either input
        steps: np.ndarray = mask_from_counts(tensors[1], *x.shape[:2]).astype(dtype)
        return steps, None, lambda g: ([None, None], {})
    if kind == "lengths_mask":  # the lengths are integers: no gradient
        made = mask_from_counts(tensors[1], *x.shape[:2])
        return x, made, lambda g: ([g, None], {})
    if kind == "dense":
        y, vjp = _dense(record, x, dtype)
        return y, kept, vjp
    if kind == "global_pool":
        y, vjp = _global_pool(record, x, mask)
        return y, None, vjp
    if kind in ("flatten", "reshape", "permute"):
        if kind == "permute":
            y = np.transpose(x, (0, *options["dims"]))
        else:
            shape = (-1,) if kind == "flatten" else tuple(options["target_shape"])
            y = x.reshape((x.shape[0], *shape))
        return y, None, _moved(record, x, y)
    if kind in ("relu", "elu", "prelu", "softmax", "activation"):
        from .shape_layers import run_shape_layer

        if kind == "activation":
            y = activate(str(options["activation"]), x)
        else:
            y, kept = run_shape_layer(record, [x], [mask], dtype, _no_graph)
        return y, kept, _elementwise(record, x, y)
    raise UnsupportedFeatureError(  # pragma: no cover - the graph's refusal names it first
        f"layer {record.name!r} ({record.class_name}): no gradient reference for kind {kind!r}"
    )


__all__ = ["BACKWARD_KINDS", "Step", "Vjp", "activation_backward", "layer_step"]
