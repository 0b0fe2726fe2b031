"""Time-major tensors of a captured ``forward``, (time, batch, ...), read as the batch-major
tensors of the Keras port.

torch's recurrent modules read and return (time, batch, features) by default
(``batch_first=False``), so code written for them transposes its input, runs the module,
and reads the output time-major: ``out[-1]``, ``out.mean(0)``, a Linear over it, a
transpose back. A Keras tensor has its batch axis first, so each such tensor is read as the
record computing the same numbers with axes 0 and 1 swapped back:

- Which tensors are time-major is read from the two captures' shapes: their batch axis
  (of the captures' two batch sizes) is axis 1. Their shapes are kept batch-major, as
  their records compute them.
- A transpose or permute is read on the records' axes: ``x.transpose(0, 1)`` computes
  nothing, ``conv.permute(2, 0, 1)`` (a CRNN's (B, C, W) to (W, B, C)) is a permute of
  the features and time.
- An operation with axis arguments (select, slice, reductions, softmax, cat, stack,
  norms) is read with them counted on the records' axes: ``out[-1]`` selects the last
  step of axis 1, ``out.mean(0)`` averages over axis 1.
- Elementwise operations, ``F.linear`` and products over the last axes read their
  operands as they are, all time-major or none. So do the modules applied over the last
  axis (Linear, LayerNorm, Embedding, Dropout, elementwise activations), and an
  ``nn.LSTM``/``nn.GRU``/``nn.RNN`` with ``batch_first=False`` reads a time-major tensor as
  the same module with ``batch_first=True`` reads the batch-major one.
- A reshape keeps time and batch where they are, or moves an axis of size 1
  (``h.squeeze(0)``).
- A tensor the module holds of the steps and one row, (time, 1, ...), combined
  elementwise with a time-major tensor of one length in every capture (the positional
  table of a model of fixed-length inputs, or of its ONNX export at one length) is held
  as the records hold it, (1, time, ...).

Anything else reading a time-major tensor is refused by name, and so is a time-major
tensor returned by ``forward`` (the Keras port's outputs have the batch axis first).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from .._imports import require
from .capture_tensors import RESHAPES, Tensors, Unsupported, op_name

# op -> the index of its axis argument (its default where the call leaves it out)
AXIS_ARGUMENT = {
    **dict.fromkeys(["aten.select", "aten.slice", "aten.cat", "aten.stack", "aten.flip"], 1),
    **dict.fromkeys(["aten.softmax", "aten._softmax", "aten.log_softmax", "aten._log_softmax"], 1),
    **dict.fromkeys(["aten.sum", "aten.mean", "aten.amax", "aten.amin", "aten.max", "aten.min"], 1),
    "aten.linalg_vector_norm": 2,
}
_AXIS_DEFAULT = {"aten.slice": 0, "aten.cat": 0, "aten.stack": 0}
PERMUTES = {"aten.transpose", "aten.permute", "aten.t"}
_ELEMENTWISE = {
    *("aten.relu", "aten.tanh", "aten.sigmoid", "aten.silu", "aten.selu", "aten.softsign"),
    *("aten.hardsigmoid", "aten.exp", "aten.gelu", "aten.leaky_relu", "aten.elu"),
    *("aten.add", "aten.sub", "aten.rsub", "aten.mul", "aten.div", "aten.neg", "aten.pow"),
    *("aten.clamp", "aten.clamp_min", "aten.clamp_max", "aten.hardtanh", "aten.reciprocal"),
    *("aten.sqrt", "aten.rsqrt", "aten.square", "aten.abs", "aten.log", "aten.log1p"),
    *("aten.expm1", "aten.sign", "aten.sin", "aten.cos"),
    *("aten.clone", "aten.contiguous", "aten.alias", "aten.detach", "aten.lift_fresh_copy"),
    *("aten.dropout", "aten.feature_dropout", "aten.alpha_dropout", "aten._to_copy"),
}
_LAST_AXES = {"aten.linear", "aten.matmul", "aten.mm", "aten.bmm"}  # over the last axes only
_TIME_MAJOR = "a time-major tensor (time, batch, ...)"


def mark_time_major(tensors: Tensors) -> None:
    """Find the time-major tensors (batch axis 1 in both captures) and give them the
    batch-major shapes of the records computing them."""
    for name, (first, second) in list(tensors.shapes.items()):
        if second is None or len(first) < 2 or len(second) != len(first):
            continue
        batch_second = (first[1], second[1]) == tensors.batches
        batch_first = (first[0], second[0]) == tensors.batches
        if batch_second and not batch_first:
            tensors.swapped.add(name)
            tensors.shapes[name] = (_swapped(first), _swapped(second))


def touches_time_major(node: Any, tensors: Tensors) -> bool:
    """Whether ``node`` reads or computes a time-major tensor."""
    return tensors.is_swapped(node) or any(tensors.is_swapped(n) for n in node.all_input_nodes)


def on_record_axes(node: Any, tensors: Tensors) -> Any:
    """``node`` as the records read it: with its axis arguments counted on the records'
    (batch-major) axes; ``node`` itself where it has none.

    Raises:
        Unsupported: an operation on time-major tensors the records cannot compute.
    """
    op = op_name(node)
    torch = require("torch")
    operands = [
        n
        for n in node.all_input_nodes
        if not tensors.holds(n) and isinstance(n.meta.get("val"), torch.Tensor)
    ]
    if not operands:  # not read as a broadcast (.capture_broadcast): the batch axis is elsewhere
        raise Unsupported(
            f"applies {op} to a tensor the module holds, giving it a batch axis that is not "
            "its first or second axis in both captures"
        )
    if op in RESHAPES:
        _check_reshape(node, tensors)
        return node
    if len({tensors.is_swapped(n) for n in operands}) > 1:
        raise Unsupported(f"applies {op} to {_TIME_MAJOR} and a batch-major one")
    rows = any(time_major_rows(n, tensors) for n in operands)
    if rows and len({time_major_rows(n, tensors) for n in operands}) == 1:
        _mark_rows(node, operands[0], tensors)
    if op in PERMUTES and not rows:
        return _permute(node, tensors)
    if op in AXIS_ARGUMENT and not rows:
        return _axis_arguments(node, tensors)
    if op in AXIS_ARGUMENT and op != "aten.stack":  # over (time * batch, ...) rows
        return _rows_axes(node)
    if op == "aten.embedding" and tensors.is_swapped(node.args[1]) == tensors.is_swapped(node):
        return node  # each id looked up where it stands (F.embedding, an ONNX Gather)
    if op in _ELEMENTWISE or (op in _LAST_AXES and tensors.rank(node) >= 3):
        if any(tensors.is_swapped(n) != tensors.is_swapped(node) for n in operands):
            raise Unsupported(f"applies {op} moving the batch axis")
        steps = [(held, _held_steps(held, node, tensors)) for held in node.all_input_nodes]
        for held, _ in (pair for pair in steps if pair[1] is None and tensors.holds(pair[0])):
            if op in _ELEMENTWISE or tensors.rank(held) > 2:  # x @ self.W reads its last axis
                _check_held(op, held, node, tensors)
        moved = {held: along for held, along in steps if along is not None}
        if not moved:
            return node
        args = tuple(moved.get(arg, arg) if hasattr(arg, "op") else arg for arg in node.args)
        return OnRecordAxes(node, args, dict(node.kwargs))
    raise Unsupported(
        f"applies {op} to {_TIME_MAJOR}; read as Keras tensors have it, the batch axis "
        "first: transpose it back first, x.transpose(0, 1)"
    )


def module_on_record_axes(path: str, child: Any, given: Any, result: Any, tensors: Tensors) -> Any:
    """The module a call of ``child`` is read as, reading ``given`` and computing
    ``result`` (None where only a recurrent module's states are used): a time-major
    ``nn.LSTM``/``nn.GRU``/``nn.RNN`` as its ``batch_first`` copy, any other module as it is.

    Raises:
        Unsupported: a call the records cannot compute on the tensors' layouts.
    """
    nn = require("torch").nn
    swapped = tensors.is_swapped(given)
    kind = type(child).__name__
    if result is not None and time_major_rows(given, tensors):
        _mark_rows(result, given, tensors)
    if isinstance(child, nn.RNNBase):
        if child.batch_first and swapped:
            raise Unsupported(f"passes {_TIME_MAJOR} to {path!r} ({kind}, batch_first=True)")
        if child.batch_first:
            return child
        if not swapped:
            raise Unsupported(
                f"passes {path!r} ({kind}, batch_first=False, which reads (time, batch, "
                "features)) a tensor whose batch axis is first, as a Keras model's input "
                "has it: transpose it in forward, x.transpose(0, 1), or build the module "
                "with batch_first=True"
            )
        batch_major = copy.copy(child)  # shares the weights; only the layout differs
        batch_major.batch_first = True
        return batch_major
    if not swapped and (result is None or not tensors.is_swapped(result)):
        return child
    if (
        result is not None
        and tensors.is_swapped(result) == swapped
        and _over_last_axes(child, tensors.rank(given), nn)
    ):
        return child
    raise Unsupported(f"applies {path!r} ({kind}) to {_TIME_MAJOR}")


def _over_last_axes(child: Any, rank: int, nn: Any) -> bool:
    """Whether ``child`` computes each position of the leading two axes on its own."""
    if isinstance(child, nn.LayerNorm):
        return len(child.normalized_shape) <= rank - 2
    if isinstance(child, (nn.Embedding, nn.Dropout, nn.Identity)):
        return True
    if isinstance(child, (nn.Linear, nn.Softmax, nn.LogSoftmax)):
        return rank >= 3 and getattr(child, "dim", -1) in (-1, rank - 1)
    elementwise = type(child).__module__ == nn.modules.activation.__name__
    return elementwise and not isinstance(child, (nn.MultiheadAttention, nn.PReLU, nn.GLU))


class OnRecordAxes:
    """A captured node with other arguments; everything else is the node's."""

    def __init__(
        self, node: Any, args: tuple[Any, ...], kwargs: dict[str, Any], target: Any = None
    ) -> None:
        self._node, self.args, self.kwargs = node, args, kwargs
        self.target = node.target if target is None else target

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._node, attribute)


def time_major_rows(node: Any, tensors: Tensors) -> bool:
    """Whether ``node`` is a time-major tensor with time and batch in one axis,
    (time * batch, ...), as ``out.view(T * B, H)`` makes it for a Linear."""
    return tensors.is_swapped(node) and len(node.meta["val"].shape) != tensors.rank(node)


def _mark_rows(result: Any, rows: Any, tensors: Tensors) -> None:
    """Mark ``result`` as (time * batch, ...) where its first axis is that of ``rows``,
    time-major (``out.view(T * B, H)``) or already so (a Linear over it), each row
    computed from its own: its record keeps (batch, time) first."""
    if tensors.is_swapped(result) or result.name not in tensors.shapes:
        return
    shapes = []
    for own, computed in zip(tensors.shapes[rows.name], tensors.shapes[result.name]):
        if own is None or computed is None or computed[0] != own[0] * own[1]:
            return
        shapes.append((*own[:2], *computed[1:]))
    tensors.swapped.add(result.name)
    tensors.shapes[result.name] = (shapes[0], shapes[1])


def _swapped(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[1], shape[0], *shape[2:])


def _on_record(axis: int, rank: int, swapped: bool) -> int:
    axis %= rank
    return {0: 1, 1: 0}.get(axis, axis) if swapped else axis


def _axis_arguments(node: Any, tensors: Tensors) -> Any:
    """The node with its axis argument counted on the records' axes (``stack`` counts its
    result's axes, every other operation its input's)."""
    source = axes_source(node)
    swapped, rank = tensors.is_swapped(source), tensors.rank(source)
    moved = with_axes_moved(node, lambda dim: _on_record(dim, rank, swapped))
    return node if moved is None else moved  # over every axis: refused by its reader


def _rows_axes(node: Any) -> Any:
    """``node``, reading a tensor of time and batch merged, (time * batch, ...), with its
    axis argument counted on the records' (batch, time, ...): one further.

    Raises:
        Unsupported: an axis over the merged rows themselves.
    """
    rank = len(axes_source(node).meta["val"].shape)

    def moved(dim: int) -> int:
        if dim % rank == 0:
            raise Unsupported(f"applies {op_name(node)} over rows of time and batch merged")
        return dim % rank + 1

    return with_axes_moved(node, moved) or node


def axes_source(node: Any) -> Any:
    """The tensor whose axes an operation of :data:`AXIS_ARGUMENT` counts: ``stack``'s
    result, every other one's (first) input."""
    source = node if op_name(node) == "aten.stack" else node.args[0]
    return source[0] if isinstance(source, (list, tuple)) else source  # cat's parts


def with_axes_moved(node: Any, move: Callable[[int], int]) -> OnRecordAxes | None:
    """``node`` with each axis of its axis argument (its default where the call leaves it
    out) moved by ``move``; None where it runs over every axis."""
    op, args, kwargs = op_name(node), list(node.args), dict(node.kwargs)
    index = AXIS_ARGUMENT[op]
    if index < len(args):
        dims = args[index]
    elif "dim" in kwargs:
        dims = kwargs["dim"]
    elif op in _AXIS_DEFAULT and len(args) == index:  # cat(parts): dim 0
        args.append(_AXIS_DEFAULT[op])
        dims = args[index]
    else:
        return None
    if dims is None:
        return None
    moved: Any = (
        [move(int(d)) for d in dims] if isinstance(dims, (list, tuple)) else move(int(dims))
    )
    if index < len(args):
        args[index] = moved
    else:
        kwargs["dim"] = moved
    return OnRecordAxes(node, tuple(args), kwargs)


def permute_dims(node: Any, rank: int) -> list[int]:
    """The axes a transpose, permute or ``t`` of a rank-``rank`` tensor takes, in order."""
    op = op_name(node)
    if op == "aten.permute":
        return [int(dim) % rank for dim in node.args[1]]
    first, second = (int(d) % rank for d in (node.args[1:3] if op == "aten.transpose" else (0, 1)))
    dims = list(range(rank))
    dims[first], dims[second] = dims[second], dims[first]
    return dims


def _permute(node: Any, tensors: Tensors) -> Any:
    """A transpose or permute as a permute of the records' axes."""
    torch = require("torch")
    x = node.args[0]
    rank = tensors.rank(x)
    dims = permute_dims(node, rank)
    before, after = tensors.is_swapped(x), tensors.is_swapped(node)
    # record axis i of the result is real axis on(i) of the result, real axis dims[...] of x
    on_record = [_on_record(dims[_on_record(i, rank, after)], rank, before) for i in range(rank)]
    return OnRecordAxes(node, (x, on_record), {}, target=torch.ops.aten.permute.default)


def _check_reshape(node: Any, tensors: Tensors) -> None:
    """Refuses a reshape that moves time or batch: only one keeping both axes, or moving an
    axis of size 1 next to the batch, keeps the values' order on the records' axes."""
    x = node.args[0]
    before, after = tensors.is_swapped(x), tensors.is_swapped(node)
    if before and not after and not time_major_rows(x, tensors) and not _squeezed(x, node, tensors):
        _mark_rows(node, x, tensors)  # out.view(T * B, H)
        after = tensors.is_swapped(node)
    real = [_real(tensors.shapes[n.name], tensors.is_swapped(n)) for n in (x, node)]
    if before and after:
        keeps = all(a[:2] == b[:2] for a, b in zip(*real) if a is not None and b is not None)
    else:  # the time-major one has one step: (1, B, ...)
        moved = real[0] if before else real[1]
        keeps = all(shape[0] == 1 for shape in moved if shape is not None)
    if not keeps:
        raise Unsupported(
            f"applies {op_name(node)} mixing the time and batch axes of {_TIME_MAJOR}"
        )


def _squeezed(x: Any, node: Any, tensors: Tensors) -> bool:
    """Whether ``node`` is time-major ``x`` of one step in every capture without its time
    axis, ``out.squeeze(0)`` (a decoder's step), not its steps and rows merged."""
    pairs = zip(_real(tensors.shapes[x.name], True), tensors.shapes[node.name])
    return all(
        given is None or (given[0] == 1 and given[1:] == made)
        for given, made in pairs
        if made is not None
    )


def _real(shapes: Any, swapped: bool) -> list[Any]:
    return [None if s is None else (_swapped(s) if swapped else s) for s in shapes]


class _BatchMajor:
    """A held tensor of the steps, (time, 1, ...), read as the records hold it, (1, time,
    ...), under its own name."""

    def __init__(self, held: Any, name: str) -> None:
        self._held, self.name = held, name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._held, attribute)


def _held_steps(held: Any, node: Any, tensors: Tensors) -> _BatchMajor | None:
    """A held tensor ``node`` adds (multiplies...) to a time-major tensor of one length in
    every capture, over its steps and broadcast over the batch, (time, 1, ...): as the
    records hold it, (1, time, ...) (a positional table of a model exported at one
    length). None for any other."""
    if not tensors.holds(held) or held.name not in tensors.shapes:
        return None
    shape, (first, second) = tuple(tensors.shapes[held.name][0]), tensors.shapes[node.name]
    steps = first[1] if len(first) > 1 else None
    if second is not None and (len(second) != len(first) or second[1] != steps):
        return None  # the steps vary: a table of one length cannot follow them
    if len(shape) != len(first) or shape[:2] != (steps, 1):
        return None
    name = f"{held.name}_batch_major"
    tensors.held[name] = tensors.held[held.name].transpose(0, 1)
    moved = _swapped(shape)
    tensors.shapes[name] = (moved, moved)
    return _BatchMajor(held, name)


def _check_held(op: str, held: Any, node: Any, tensors: Tensors) -> None:
    """Refuses a held tensor broadcast onto the time or batch axis of a time-major tensor
    (the records would apply it to the other)."""
    shape = tuple(tensors.shapes[held.name][0])
    leading = shape[: max(0, len(shape) - (tensors.rank(node) - 2))]
    if any(size != 1 for size in leading):
        raise Unsupported(
            f"applies {op} to {_TIME_MAJOR} and {held.name!r} of shape {shape}, which "
            "reaches its time or batch axis"
        )


__all__ = [
    "AXIS_ARGUMENT",
    "PERMUTES",
    "OnRecordAxes",
    "axes_source",
    "mark_time_major",
    "module_on_record_axes",
    "on_record_axes",
    "permute_dims",
    "time_major_rows",
    "touches_time_major",
    "with_axes_moved",
]
