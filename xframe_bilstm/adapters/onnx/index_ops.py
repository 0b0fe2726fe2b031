"""Operators that pick or place elements by index, run with torch ops: ``TopK``,
``GatherElements`` and ``ScatterElements``.

torch.onnx writes them for code users write: ``pack_padded_sequence(...,
enforce_sorted=False)`` sorts the rows by their lengths (``TopK``) and puts them back
(``ScatterElements`` of a ``Range`` makes the inverse order), and ``x.gather(1, index)``
(the last valid step of each row) is ``GatherElements``. Each follows the operator's
definition: ``TopK``'s ``k`` is an input from opset 10 (an attribute before), ties keep
the lower index first; ``ScatterElements`` writes without a reduction (a ``reduction``
is refused by name); negative indices count from the end of the axis.

torch is reached through :attr:`.op_call.OpCall.torch`, so importing this module imports no
framework.
"""

from __future__ import annotations

from typing import Any

from .op_call import Op, OpCall


def _axis(call: OpCall, rank: int, default: int) -> int:
    return int(call.attributes.get("axis", default)) % rank


def _top_k(call: OpCall) -> tuple[Any, ...]:
    x = call.args[0]
    axis = _axis(call, x.dim(), -1)
    # k: an attribute before opset 10, then an input (a number, :mod:`.static_values`)
    k = int(call.attributes["k"]) if call.opset < 10 else int(call.args[1].reshape(-1)[0])
    largest = bool(call.attributes.get("largest", 1))
    # A stable sort: ONNX orders equal values by their index, lowest first.
    order = call.torch.sort(x, dim=axis, descending=largest, stable=True).indices
    indices = order.narrow(axis, 0, k)
    return call.torch.gather(x, axis, indices), indices


def _positions(torch: Any, index: Any, size: int) -> Any:
    """Indices of an axis of ``size``, negative ones counted from its end. In a capture
    they stay as they are, as torch code gathers at the nonnegative positions it computes;
    a graph gathering at negative ones gives a torch port that fails its check (torch's
    gather refuses them), not a wrong one."""
    index = index if index.dtype == torch.int64 else index.long()
    return index if torch.compiler.is_compiling() else index % size


def _gather_elements(call: OpCall) -> tuple[Any, ...]:
    x, index = call.args[:2]
    axis = _axis(call, x.dim(), 0)
    return (call.torch.gather(x, axis, _positions(call.torch, index, x.shape[axis])),)


def _scatter_elements(call: OpCall) -> tuple[Any, ...]:
    x, index, updates = call.args[:3]
    reduction = call.attributes.get("reduction", "none")
    if reduction != "none":
        raise call.refuse(f"reduction={reduction!r} is not run")
    axis = _axis(call, x.dim(), 0)
    return (call.torch.scatter(x, axis, _positions(call.torch, index, x.shape[axis]), updates),)


# Operator name -> the function that runs one node of it.
INDEX_OPS: dict[str, Op] = {
    "GatherElements": _gather_elements,
    "ScatterElements": _scatter_elements,
    "TopK": _top_k,
}
