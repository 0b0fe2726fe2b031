"""The operations of a ``forward`` captured by ``torch.export`` (ATen operators), as the
layer records of a Keras model computing the same.

Rules of this module:

- One operator of the captured graph becomes at most a few records of existing kinds where
  one means the same (``permute``, ``reshape``, ``concatenate``, ``merge``, activations,
  ``softmax``, ``relu``, ``elu``) and of the generic kinds ``reduce``, ``slice`` and
  ``scalar_op`` otherwise, and ``matmul`` for a product of two batches of matrices
  (``q @ k``, ``torch.bmm``, a two-operand ``torch.einsum``); activations are read by
  :mod:`.capture_activations`, elementwise arithmetic, clamps and norms by
  :mod:`.capture_arithmetic`, ``F.pad`` by :mod:`.capture_padding`, ``torch.gather`` by
  :mod:`.capture_gather`; operators that compute
  nothing at inference (``dropout`` in eval mode, ``clone``, ``contiguous``) pass their
  input on.
- Shapes come from two captures of the module, at two batch sizes and two lengths of the
  input's free axes: an axis whose size differs between them is free (``-1`` in a
  ``Reshape``); axis 0 must be the batch axis in both, so operations on it are refused.
- What has no record raises :class:`Unsupported` with what the operation does; the caller
  lists every such operation with the line of ``forward`` it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..graph import LayerRecord
from .capture_activations import HANDLERS as ACTIVATIONS
from .capture_arithmetic import HANDLERS as ARITHMETIC
from .capture_gather import gather_records
from .capture_merged_steps import merged_on_record_axes, touches_merged
from .capture_padding import pad_records
from .capture_positions import positions_lookup
from .capture_repeats import HANDLERS as REPEATS
from .capture_split import HANDLERS as SPLITS
from .capture_split import is_piece, piece_records
from .capture_tensors import RESHAPES, Tensors, Unsupported, axis_of, is_tuple_getitem, op_name
from .capture_time_major import on_record_axes, touches_time_major

_END = 2**62  # aten.slice's "to the end" is the largest int64


def _record(name: str, kind: str, cls: str, inputs: Sequence[str], **options: Any) -> LayerRecord:
    return LayerRecord(name, kind, cls, tuple(inputs), options)


_PASS_ON = {"aten.clone", "aten.contiguous", "aten.alias", "aten.detach", "aten.lift_fresh_copy"}
_REDUCTIONS = {
    "aten.sum": "sum",
    "aten.mean": "mean",
    "aten.amax": "max",
    "aten.amin": "min",
    "aten.logsumexp": "logsumexp",
}


def op_records(node: Any, name: str, tensors: Tensors) -> list[LayerRecord] | None:
    """The records of one captured operation ``node``, named from ``name``.

    Returns:
        The records (the last one computes the node's tensor), or None where the node
        passes its input on unchanged.

    Raises:
        Unsupported: saying what the operation does that no record computes.
    """
    if is_piece(node):  # a, b = h.chunk(2, dim=-1)
        return piece_records(node, name, tensors)
    if touches_merged(node, tensors):  # chars.view(B * T, W), then per word
        node = merged_on_record_axes(node, tensors)
    elif touches_time_major(node, tensors):  # out[-1] of an nn.LSTM(batch_first=False)
        node = on_record_axes(node, tensors)
    op = op_name(node)
    args, kwargs = list(node.args), dict(node.kwargs)
    if op in _PASS_ON:
        return None
    if op in ("aten.dropout", "aten.feature_dropout", "aten.alpha_dropout"):
        if args[2] if len(args) > 2 else kwargs.get("train", False):
            raise Unsupported(f"applies {op} in training mode")
        return None
    if op in ("aten._to_copy", "aten.to") and _same_values(args[0], node):
        return None  # a copy, a move to another device (lengths.cpu()), int64 <-> int32
    handler = _HANDLERS.get(op)
    if handler is None:
        raise Unsupported(f"applies {op}")
    return handler(node, name, tensors, args, kwargs)


def _same_values(x: Any, node: Any) -> bool:
    """Whether ``node``, a dtype cast of ``x``, holds ``x``'s values: the same dtype, or
    integers of 32 or 64 bits (ids and lengths, which never need more than 32)."""
    given, made = x.meta["val"].dtype, node.meta["val"].dtype
    return bool(given == made) or {str(given), str(made)} <= {"torch.int32", "torch.int64"}


def _reshape(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    target = tensors.free_shape(node)
    if target == tensors.free_shape(args[0]):
        return []  # the same shape: nothing to compute
    return [_record(name, "reshape", "reshape", [tensors.name(args[0])], target_shape=target)]


def _permute(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    rank = tensors.rank(args[0])
    if op_name(node) == "aten.transpose":
        first, second = (int(dim) % rank for dim in args[1:3])
        dims = list(range(rank))
        dims[first], dims[second] = dims[second], dims[first]
    else:
        dims = [int(dim) % rank for dim in args[1]]
    if dims[0] != 0:
        raise Unsupported(f"{op_name(node)} moves the batch axis (dims {tuple(dims)})")
    if dims == list(range(rank)):
        return []
    return [_record(name, "permute", "permute", [tensors.name(args[0])], dims=tuple(dims[1:]))]


def _concatenate(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    parts, dim = list(args[0]), int(args[1]) if len(args) > 1 else int(kwargs.get("dim", 0))
    if op_name(node) == "aten.cat":
        axis = axis_of(tensors, parts[0], dim, "aten.cat")
        names = [tensors.name(part) for part in parts]
        rank = tensors.rank(parts[0])
    else:  # stack: each part gets the new axis, then they are joined along it
        rank = tensors.rank(parts[0]) + 1
        axis = dim + rank if dim < 0 else dim
        if axis == 0:
            raise Unsupported(f"applies aten.stack over the batch axis (dim={dim})")
        records, names = [], []
        for index, part in enumerate(parts):
            shape = list(tensors.free_shape(part))
            shape.insert(axis - 1, 1)
            part_name = f"{name}_expand_{index}"
            records.append(
                _record(
                    part_name, "reshape", "reshape", [tensors.name(part)], target_shape=tuple(shape)
                )
            )
            names.append(part_name)
        joined = _record(name, "concatenate", "stack", names, axis=axis - rank, mask_combine="any")
        return [*records, joined]
    return [_record(name, "concatenate", "cat", names, axis=axis - rank, mask_combine="any")]


def _slice(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    x = args[0]
    dim = int(args[1]) if len(args) > 1 else 0
    start = args[2] if len(args) > 2 else None
    stop = args[3] if len(args) > 3 else None
    step = int(args[4]) if len(args) > 4 else 1
    start = 0 if start is None else int(start)
    stop = None if stop is None or int(stop) >= _END else int(stop)
    everything = start == 0 and stop is None and step == 1
    if everything:
        return []  # ``x[:, ...]`` slices the batch axis whole: nothing to compute
    axis = axis_of(tensors, x, dim, "slices")
    options = {"axis": axis, "start": start, "stop": stop, "step": step, "keep_axis": True}
    return [LayerRecord(name, "slice", "slice", (tensors.name(x),), options)]


def _flip(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    """``torch.flip(x, dims)``: each axis reversed, a ``slice`` of step -1 over it."""
    records, x = [], tensors.name(args[0])
    axes = [axis_of(tensors, args[0], int(dim), "aten.flip") for dim in args[1]]
    for index, axis in enumerate(axes):
        here = name if index == len(axes) - 1 else f"{name}_{axis}"
        options = {"axis": axis, "start": -1, "stop": None, "step": -1, "keep_axis": True}
        records.append(LayerRecord(here, "slice", "flip", (x,), options))
        x = here
    return records


def _select(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    x, dim, index = args[0], int(args[1]), int(args[2])
    axis = axis_of(tensors, x, dim, "selects")
    options = {"axis": axis, "start": index, "stop": None, "step": 1, "keep_axis": False}
    return [LayerRecord(name, "slice", "select", (tensors.name(x),), options)]


def _reduce(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    op = op_name(node)
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    keepdims = bool(args[2] if len(args) > 2 else kwargs.get("keepdim", False))
    if kwargs.get("dtype") is not None or (op == "aten.sum" and len(args) > 3):
        raise Unsupported(f"applies {op} with a dtype")
    kind = "max" if op == "aten.max" else "min" if op == "aten.min" else _REDUCTIONS[op]
    options = {"op": kind, "axes": _axes(op, args[0], dims, tensors), "keepdims": keepdims}
    return [LayerRecord(name, "reduce", op.split(".")[-1], (tensors.name(args[0]),), options)]


def _spread(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    """``x.var(dim)`` and ``x.std(dim)`` (statistics pooling over the steps), with torch's
    correction: 1 (unbiased) unless said otherwise."""
    op = op_name(node)
    kind = op.split(".")[-1]
    correction = kwargs.get("correction")
    if correction is None:
        correction = int(bool(args[2] if len(args) > 2 else kwargs.get("unbiased", True)))
    if isinstance(correction, bool) or int(correction) != correction or correction < 0:
        raise Unsupported(f"applies {op} with correction={correction}")
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    options = {
        "op": kind,
        "axes": _axes(op, args[0], dims, tensors),
        "keepdims": bool(args[3] if len(args) > 3 else kwargs.get("keepdim", False)),
        "correction": int(correction),
    }
    return [LayerRecord(name, "reduce", kind, (tensors.name(args[0]),), options)]


def _axes(op: str, x: Any, dims: Any, tensors: Tensors) -> tuple[int, ...]:
    """The axes a reduction over ``dims`` of ``x`` reads, which must leave the batch axis."""
    if dims is None or (isinstance(dims, (list, tuple)) and not dims):
        raise Unsupported(f"applies {op} over every axis, the batch axis included")
    dims = dims if isinstance(dims, (list, tuple)) else [dims]
    return tuple(sorted(axis_of(tensors, x, int(dim), op) for dim in dims))


def _matmul(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    """``a @ b``, ``torch.bmm`` and two-operand ``torch.einsum`` of one rank, batch-preserving."""
    op = op_name(node)
    kernel = None if op == "aten.einsum" else tensors.value(args[1])
    if kernel is not None and kernel.ndim == 1:  # x @ self.w: a score of each step
        column = _dense(f"{name}_column", op, args[0], kernel[:, None], None, tensors)
        last = (tensors.rank(args[0]) - 1,)  # the column's axis of one, summed away
        options = {"op": "sum", "axes": last, "keepdims": False}
        return [column, _record(name, "reduce", "sum", [column.name], **options)]
    if kernel is not None:  # x @ self.W
        return [_dense(name, op, args[0], kernel, None, tensors)]
    if op == "aten.einsum" and len(args[1]) == 2 and tensors.holds(args[1][1]):
        x, held = args[1]  # torch.einsum("btd,dh->bth", x, self.W)
        kernel = tensors.value(held)
        assert kernel is not None
        transposed = held_einsum_transposes(str(args[0]), tensors.rank(x))
        return [_dense(name, op, x, kernel.T if transposed else kernel, None, tensors)]
    if op == "aten.einsum":
        equation, operands = str(args[0]), list(args[1])
        if len(operands) != 2:
            raise Unsupported(f"applies aten.einsum to {len(operands)} tensors; two are read")
        transposes = einsum_transposes(equation)
    else:
        operands, transposes = args[:2], (False, False)
    a, b = operands
    shapes = [tensors.shapes[n.name][0] for n in (a, b)]
    if len(shapes[0]) != len(shapes[1]) or len(shapes[0]) < 3 or shapes[0][:-2] != shapes[1][:-2]:
        raise Unsupported(
            f"applies {op} to tensors of shapes {shapes[0]} and {shapes[1]}; a product of "
            "two tensors of one rank (3 or more) with the same leading axes is read"
        )
    first, second = tensors.shapes[node.name]
    if first[0] != tensors.batches[0] or (second and second[0] != tensors.batches[1]):
        raise Unsupported(f"applies {op} over the batch axis")
    options = {"transpose_a": transposes[0], "transpose_b": transposes[1]}
    inputs = (tensors.name(a), tensors.name(b))
    return [LayerRecord(name, "matmul", op.split(".")[-1], inputs, options)]


def _linear(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    """``F.linear(x, self.weight, self.bias)`` with tensors the module holds: a Dense."""
    weight = tensors.value(args[1])
    bias = tensors.value(args[2]) if len(args) > 2 and args[2] is not None else None
    if weight is None or (len(args) > 2 and args[2] is not None and bias is None):
        raise Unsupported("applies aten.linear with weights computed in forward")
    kernel = np.ascontiguousarray(weight.T)
    return [_dense(name, "aten.linear", args[0], kernel, bias, tensors)]


def _embedding(node: Any, name: str, tensors: Tensors, args: list, kwargs: dict) -> list:
    """``F.embedding(ids, self.table)`` with a table the module holds (tied or shared
    embeddings): an Embedding. ``padding_idx`` only stops a row's gradient, as the
    module's does; ``max_norm`` renormalizes the table in an operation of its own, refused
    by name."""
    table = tensors.value(args[0])
    if table is None or table.ndim != 2:
        raise Unsupported("applies aten.embedding with a table computed in forward")
    if args[1].name in tensors.positions:  # F.embedding(torch.arange(T), self.table)
        looked_up = positions_lookup(name, table, args[1], node, tensors)
        if looked_up is None:
            raise Unsupported("looks up positions other than along the steps")
        return [looked_up]
    weights = {"embeddings": table}
    return [
        LayerRecord(
            name, "embedding", "embedding", (tensors.name(args[1]),), {"mask_zero": False}, weights
        )
    ]


def _dense(name: str, op: str, x: Any, kernel: Any, bias: Any, tensors: Tensors) -> LayerRecord:
    """``x @ kernel (+ bias)`` over the last axis, ``kernel`` (features, units) held by the
    module (``x @ self.W``), as a Dense without activation."""
    if tensors.holds(x) or kernel.ndim != 2:
        raise Unsupported(f"applies {op} to a held tensor of shape {tuple(kernel.shape)}")
    weights = {"kernel": kernel, **({} if bias is None else {"bias": bias})}
    options = {"activation": "linear", "time_distributed": False}
    return LayerRecord(name, "dense", op.split(".")[-1], (tensors.name(x),), options, weights)


def held_einsum_transposes(equation: str, rank: int) -> bool:
    """Whether the held matrix of ``einsum(equation, x, W)``, ``x`` of ``rank``, is
    transposed before ``x @ W``: the equation sums ``x``'s last axis against one of W's
    two, keeping ``x``'s others in order and W's other last.

    Example:
        >>> held_einsum_transposes("btd,dh->bth", 3), held_einsum_transposes("...d,vd->...v", 3)
        (False, True)
    """
    text = equation.replace(" ", "")
    refused = Unsupported(
        f"applies aten.einsum with {equation!r} to a held tensor, not a product over the "
        "last axis ('btd,dh->bth', 'btd,hd->bth')"
    )
    if "->" not in text or text.count(",") != 1:
        raise refused
    left, out = text.split("->")
    a, w = left.split(",")
    ellipsis = a.startswith("...") and out.startswith("...")
    if ellipsis:
        a, out = a[3:], out[3:]
    if "." in a + w + out or len(w) != 2 or not a or len(set(a)) != len(a):
        raise refused
    if not ellipsis and len(a) != rank:
        raise refused
    d = a[-1]
    v = w.replace(d, "", 1)
    if d not in w or len(v) != 1 or v in a or out != a[:-1] + v:
        raise refused
    return w == v + d


def einsum_transposes(equation: str) -> tuple[bool, bool]:
    """Whether each operand of an ``einsum`` equation is transposed before ``a @ b``.

    The equation must be one batched matrix product: both operands and the result share
    their leading letters, and ``ij,jk->ik`` on the last two in any order of each operand.

    Example:
        >>> einsum_transposes("bqd,bkd->bqk"), einsum_transposes("bhqk,bhkd->bhqd")
        ((False, True), (False, False))
    """
    text = equation.replace(" ", "")
    refused = Unsupported(
        f"applies aten.einsum with {equation!r}, not one batched matrix product "
        "('bij,bjk->bik', either operand's last two letters swapped)"
    )
    if "->" not in text or "." in text or text.count(",") != 1:
        raise refused
    left, out = text.split("->")
    a, b = left.split(",")
    if not len(a) == len(b) == len(out) >= 3 or not a[:-2] == b[:-2] == out[:-2]:
        raise refused
    i, k = out[-2], out[-1]
    shared = set(a[-2:]) & set(b[-2:])
    if len(shared) != 1 or len(set(out)) != len(out) or shared & set(out):
        raise refused
    j = shared.pop()
    if set(a[-2:]) != {i, j} or set(b[-2:]) != {j, k}:
        raise refused
    return a[-2:] == j + i, b[-2:] == k + j


Handler = Callable[[Any, str, Tensors, list, dict], list]
_HANDLERS: dict[str, Handler] = {
    **ACTIVATIONS,
    **dict.fromkeys(["aten.pad", "aten.constant_pad_nd"], pad_records),
    "aten.gather": gather_records,
    **dict.fromkeys(RESHAPES, _reshape),
    **dict.fromkeys(["aten.permute", "aten.transpose"], _permute),
    **dict.fromkeys(["aten.cat", "aten.stack"], _concatenate),
    "aten.slice": _slice,
    "aten.select": _select,
    "aten.flip": _flip,
    **REPEATS,
    **dict.fromkeys([*_REDUCTIONS, "aten.max", "aten.min"], _reduce),
    **dict.fromkeys(["aten.var", "aten.std"], _spread),
    **ARITHMETIC,
    **SPLITS,
    **dict.fromkeys(["aten.matmul", "aten.bmm", "aten.mm", "aten.einsum"], _matmul),
    "aten.linear": _linear,
    "aten.embedding": _embedding,
}


__all__ = [
    "Tensors",
    "Unsupported",
    "einsum_transposes",
    "held_einsum_transposes",
    "is_tuple_getitem",
    "op_name",
    "op_records",
]
