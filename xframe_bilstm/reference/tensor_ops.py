"""The reference of the tensor operations a captured ``forward`` applies between layers.

Written from their definitions in numpy, independently of the torch port:

- ``reduce``: the sum, mean, maximum, minimum, sum of absolute values (``l1_norm``),
  square root of the sum of squares (``l2_norm``), variance or standard deviation (``var``,
  ``std``: the squared distances from the mean summed and divided by their count less
  ``correction``) or log of the sum of exponentials (``logsumexp``) over ``axes``
  (counted with the batch axis), keeping them as size 1 where ``keepdims``.
- ``slice``: ``x[..., start:stop:step, ...]`` on one ``axis``; with ``keep_axis`` False,
  the one position ``start`` with that axis removed (``x[:, -1]``). A step of -1 reverses
  the whole axis (``x[:, -1::-1]``, ``torch.flip``): start -1, no stop.
- ``scalar_op``: ``x op constant``, or ``constant op x`` where ``reverse`` (``op`` an
  arithmetic operation or ``power``); ``maximum`` and ``minimum`` with a constant are
  clamps.
- ``weight_op``: ``x op value`` (or ``value op x``) with the record's weight ``value``,
  broadcast from the right.
- ``elementwise``: one function of :data:`ELEMENTWISE` on every element.
- ``repeat``: each position on ``axis`` (counted with the batch axis, never 0) repeated
  ``repeats`` times in a row (``x.repeat_interleave(2, dim=1)``: steps a, a, b, b).
- ``matmul``: ``a @ b`` over the last two axes, each first transposed where said, as the
  sums over the shared axis that define it (``einsum``).
- ``expand``: ``x`` broadcast to :func:`expanded_shape` (a conditioning vector repeated
  over the steps of another tensor, ``z.unsqueeze(1).expand(-1, x.size(1), -1)``).
- ``gather``: ``x`` read at the positions its second input gives along ``axis``
  (``torch.gather``: the output at ``i`` is ``x`` at ``index[i]`` on ``axis`` and at ``i``
  elsewhere), the positions whole numbers held as integers or floats (the last valid step
  of each row, ``out.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, H))``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import UnsupportedFeatureError

KINDS = ("reduce", "slice", "scalar_op", "weight_op", "elementwise", "repeat")
# The functions of ``elementwise`` records, by name (torch's and numpy's names).
ELEMENTWISE: dict[str, Callable[[Any], Any]] = {
    "abs": np.abs,
    "log": np.log,
    "log1p": np.log1p,
    "expm1": np.expm1,
    "sign": np.sign,
    "sin": np.sin,
    "cos": np.cos,
}

_REDUCTIONS: dict[str, Callable[..., Any]] = {
    "sum": np.sum,
    "mean": np.mean,
    "max": np.max,
    "min": np.min,
    "l1_norm": lambda x, **kw: np.sum(np.abs(x), **kw),
    "l2_norm": lambda x, **kw: np.sqrt(np.sum(np.square(x), **kw)),
    "var": np.var,
    "std": np.std,
    "logsumexp": lambda x, **kw: _logsumexp(x, **kw),
}


def _logsumexp(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """``log(sum(exp(x)))`` over ``axis``, the largest value taken out first so that no
    exponential overflows."""
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    total = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
    return total if keepdims else np.squeeze(total, axis=axis)


def slice_index(options: Mapping[str, Any]) -> tuple[Any, ...]:
    """The numpy/torch index of a ``slice`` record, e.g. ``(slice(None), -1)``.

    Example:
        >>> slice_index({"axis": 1, "start": -1, "stop": None, "step": 1, "keep_axis": False})
        (slice(None, None, None), -1)
    """
    axis = int(options["axis"])
    start, stop, step = options["start"], options["stop"], options["step"]
    here: Any = slice(start, stop, step) if options["keep_axis"] else int(start)
    return (slice(None),) * axis + (here,)


def scalar_op(
    op: str,
    x: Any,
    constant: Any,
    reverse: bool,
    extremes: tuple[Callable[..., Any], Callable[..., Any]] = (np.maximum, np.minimum),
) -> Any:
    """``x op constant`` (or ``constant op x``) for numpy arrays, torch and Keras tensors
    alike; ``extremes`` are the framework's elementwise maximum and minimum."""
    if op in ("maximum", "minimum"):
        return extremes[op == "minimum"](x, constant)
    left, right = (constant, x) if reverse else (x, constant)
    if op == "add":
        return left + right
    if op == "subtract":
        return left - right
    if op == "multiply":
        return left * right
    if op == "divide":
        return left / right
    if op == "power":
        return left**right
    raise UnsupportedFeatureError(f"no scalar operation {op!r}")


def run_matmul(
    options: Mapping[str, Any], tensors: Sequence[np.ndarray], dtype: type
) -> np.ndarray:
    """The output of a ``matmul`` record on its two inputs.

    Example:
        >>> a, b = np.arange(6.0).reshape(1, 2, 3), np.ones((1, 2, 3))
        >>> run_matmul({"transpose_a": False, "transpose_b": True}, [a, b], np.float64).tolist()
        [[[3.0, 3.0], [12.0, 12.0]]]
    """
    a: np.ndarray = np.asarray(tensors[0]).astype(dtype)
    b: np.ndarray = np.asarray(tensors[1]).astype(dtype)
    left = "...ji" if options["transpose_a"] else "...ij"
    right = "...kj" if options["transpose_b"] else "...jk"
    return np.asarray(np.einsum(f"{left},{right}->...ik", a, b))


def expanded_shape(
    sizes: Sequence[int | None], x_shape: Sequence[Any], like_shape: Sequence[Any] = ()
) -> list[Any]:
    """The shape an ``expand`` record broadcasts ``x`` to: the batch axis as ``x``'s, then
    per axis of ``sizes``: ``-1`` keeps ``x``'s size, a positive int is that size, None is
    the size on the same axis of the record's second input (of shape ``like_shape``).
    Sizes may be numbers or a framework's scalar tensors alike.

    Example:
        >>> expanded_shape([None, -1], (2, 1, 4), (2, 7, 6))
        [2, 7, 4]
    """
    return [
        x_shape[0],
        *(
            like_shape[axis] if size is None else x_shape[axis] if size == -1 else size
            for axis, size in enumerate(sizes, start=1)
        ),
    ]


def merged_rows(x: np.ndarray, time_first: bool) -> np.ndarray:
    """(batch, time, ...) ``x`` with its batch and time axes in one, step by step where
    ``time_first`` (time * batch rows, as time-major code merges them), else row by row.

    Example:
        >>> x = np.arange(4).reshape(2, 2, 1)  # rows 0 and 1, steps 0 and 1
        >>> merged_rows(x, True).ravel().tolist(), merged_rows(x, False).ravel().tolist()
        ([0, 2, 1, 3], [0, 1, 2, 3])
    """
    rows = np.swapaxes(x, 0, 1) if time_first else x
    return np.ascontiguousarray(rows).reshape(-1, *x.shape[2:])


def held_rows(value: Any, options: Mapping[str, Any], x_shape: Sequence[Any]) -> Any:
    """The value a ``broadcast`` record repeats over the batch: its weight, cut to the size
    of its input's axis ``steps_of`` where given (a positional table to the steps). Values
    and sizes may be numpy's, torch's or Keras's alike.

    Example:
        >>> held_rows(np.arange(4), {"steps_of": 1}, (2, 3)).tolist()
        [0, 1, 2]
    """
    axis = options.get("steps_of")
    return value if axis is None else value[: x_shape[int(axis)]]


def run_expand(options: Mapping[str, Any], tensors: Sequence[np.ndarray]) -> np.ndarray:
    """An ``expand`` record's output: its first input broadcast to :func:`expanded_shape`.

    Example:
        >>> z, steps = np.array([[[1.0, 2.0]]]), np.zeros((1, 3, 5))
        >>> run_expand({"sizes": (None, -1)}, [z, steps]).tolist()
        [[[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]]
    """
    x = np.asarray(tensors[0])
    like_shape = np.shape(tensors[1]) if len(tensors) > 1 else ()
    shape = expanded_shape(list(options["sizes"]), x.shape, like_shape)
    return np.broadcast_to(x, shape).copy()


def run_gather(options: Mapping[str, Any], tensors: Sequence[np.ndarray]) -> np.ndarray:
    """A ``gather`` record's output: its first input at the positions of its second.

    Example:
        >>> steps, last = np.arange(6.0).reshape(2, 3, 1), np.array([[[2.0]], [[0.0]]])
        >>> run_gather({"axis": 1}, [steps, last]).tolist()
        [[[2.0]], [[3.0]]]
    """
    index = np.asarray(tensors[1]).astype(np.int64)
    return np.take_along_axis(np.asarray(tensors[0]), index, axis=int(options["axis"]))


def run_slice_to(options: Mapping[str, Any], tensors: Sequence[np.ndarray]) -> np.ndarray:
    """A ``slice_to`` record's output: its first input's first positions on ``axis``, as
    many as its second input has there.

    Example:
        >>> skip, x = np.arange(5.0).reshape(1, 1, 5), np.zeros((1, 1, 3))
        >>> run_slice_to({"axis": 2}, [skip, x]).tolist()
        [[[0.0, 1.0, 2.0]]]
    """
    axis = int(options["axis"])
    return np.take(np.asarray(tensors[0]), np.arange(np.shape(tensors[1])[axis]), axis=axis)


# The operations whose second input gives sizes or positions rather than values.
INDEXED_OPS: dict[str, Callable[[Mapping[str, Any], Sequence[np.ndarray]], np.ndarray]] = {
    "expand": run_expand,
    "gather": run_gather,
    "slice_to": run_slice_to,
}


def run_tensor_op(
    kind: str,
    options: Mapping[str, Any],
    x: np.ndarray,
    dtype: type,
    weights: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """The output of one record of a kind in :data:`KINDS`.

    Example:
        >>> x = np.arange(6.0).reshape(1, 3, 2)
        >>> run_tensor_op("reduce", {"op": "sum", "axes": (1,), "keepdims": False}, x,
        ...               np.float64).tolist()
        [[6.0, 9.0]]
    """
    if kind == "slice":
        return np.asarray(x[slice_index(options)])
    if kind == "repeat":
        return np.repeat(np.asarray(x), int(options["repeats"]), axis=int(options["axis"]))
    x = np.asarray(x).astype(dtype)
    if kind == "reduce":
        axes = tuple(int(axis) for axis in options["axes"])
        spread = {"ddof": int(options["correction"])} if "correction" in options else {}
        op, keepdims = str(options["op"]), bool(options["keepdims"])
        return np.asarray(_REDUCTIONS[op](x, axis=axes, keepdims=keepdims, **spread))
    if kind == "scalar_op":
        constant: np.ndarray = np.asarray(options["constant"], dtype)
        return np.asarray(scalar_op(str(options["op"]), x, constant, bool(options["reverse"])))
    if kind == "elementwise":
        with np.errstate(divide="ignore", invalid="ignore"):  # log(0): -inf, as torch gives
            return np.asarray(ELEMENTWISE[str(options["function"])](x))
    if kind == "weight_op" and weights is not None:
        value: np.ndarray = np.asarray(weights["value"]).astype(dtype)
        return np.asarray(scalar_op(str(options["op"]), x, value, bool(options["reverse"])))
    raise UnsupportedFeatureError(f"no reference for kind {kind!r}")


__all__ = [
    "ELEMENTWISE",
    "INDEXED_OPS",
    "KINDS",
    "expanded_shape",
    "held_rows",
    "merged_rows",
    "run_expand",
    "run_gather",
    "run_matmul",
    "run_slice_to",
    "run_tensor_op",
    "scalar_op",
    "slice_index",
]
