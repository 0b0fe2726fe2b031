"""The final states of a captured recurrent call, read as its layers' ``return_state`` outputs.

torch returns ``h_n`` (and an LSTM's ``c_n``) stacked as (layers * directions, B, H): entry
``2*l + d`` (``l*D + d`` in general) is layer ``l``'s final state in direction ``d``. A
Keras layer returns its final states one tensor each, in Keras order (h, c per direction,
forward first), and the graph's recurrent records are one per layer. So a state is read
where ``forward`` takes one entry of the stack, ``h_n[k]`` (``aten.select`` on axis 0 with
a constant index, as ``h_n[-1]`` and ``torch.cat([h_n[-2], h_n[-1]], 1)`` write it, or
``h_n.squeeze(0)`` of a one-layer one-direction module): that
entry is output ``1 + d*S + s`` of layer ``l``'s record (``S`` states per direction, ``s``
0 for h, 1 for c), which then returns its states. The stack used otherwise
(``h_n.transpose(0, 1).reshape(B, -1)``, ``h_n.mean(0)``) is read as the states stacked
on axis 1, (B, layers * directions, H): a time-major tensor with the entries as its steps
(:mod:`.capture_time_major`). Returned as it is, it is given time first again
(``time_first``), as torch returns it.

Initial states of zeros built in ``forward`` (:func:`zero_tensors`) are what a Keras layer
starts from without any, so the call is read as if given none. Other initial states (an
encoder's final states passed to a decoder, states computed from the input) are stacked as
torch stacks ``h_n``, a time-major tensor read as (B, layers * directions, H): each
layer's record reads entry ``l * D + d`` of each, in Keras order
(:func:`pass_initial_states`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..graph import LayerRecord, tensor_name
from .capture_tensors import Names, Tensors, Unsupported, is_tuple_getitem, op_name

_ZEROS = {"aten.zeros", "aten.zeros_like", "aten.new_zeros"}
_RECURRENT_CALLS = {"aten.lstm", "aten.gru", "aten.rnn_tanh", "aten.rnn_relu"}
_FULL = {"aten.full": 1, "aten.full_like": 1, "aten.new_full": 2}  # op -> index of the value
_SAME_VALUES = {
    "aten.to",
    "aten._to_copy",
    "aten.detach",
    "aten.clone",
    "aten.contiguous",
    "aten.alias",
    "aten.lift_fresh_copy",
}


def read_states(
    path: str,
    child: Any,
    states: list[Any],
    made: list[LayerRecord],
    tensors: Tensors,
    names: Names,
) -> list[LayerRecord]:
    """``made`` (the recurrent call's records) with the layers whose states ``forward``
    uses returning them, and the stack of a state used whole; each ``h_n[k]`` node is
    named after its state tensor, and a stack used whole after its records.

    Args:
        path: the recurrent module's path in the module, for messages.
        child: the ``nn.LSTM``/``nn.GRU``/``nn.RNN``.
        states: the call's nodes ``result[1]`` (``h_n``) and, for an LSTM, ``result[2]``.
        made: the call's records, one recurrent record per layer (dropouts between them).
        tensors: the captured tensors, where each ``h_n[k]`` gets its name.
        names: the graph's record names, for a stack's records.
    """
    layers = [record for record in made if record.kind == "recurrent"]
    directions = 2 if child.bidirectional else 1
    per_direction = 2 if child.mode == "LSTM" else 1
    count = len(layers) * directions

    def entry(k: int, which: int) -> str:  # h_n[k] (which 0) or c_n[k] (which 1)
        layer = layers[k // directions]
        returning.add(layer.name)
        return tensor_name(layer.name, 1 + (k % directions) * per_direction + which)

    returning: set[str] = set()
    stacks: list[LayerRecord] = []
    for state in states:
        which = int(state.args[1]) - 1  # 0: h_n, 1: c_n
        for user in state.users:
            k = state_entry(state, user, count)
            if k is not None:
                tensors.names[user] = entry(k, which)
            elif state not in tensors.names:
                entries = [entry(k, which) for k in range(count)]
                stack = _stack(names(f"{path}_{'hc'[which]}_n"), entries, names)
                stacks.extend(stack)
                tensors.names[state] = stack[-1].name
    returned = [
        dataclasses.replace(record, options={**record.options, "return_state": True})
        if record.name in returning
        else record
        for record in made
    ]
    return returned + stacks


def initial_states(path: str, members: list[Any], constants: set[Any]) -> list[Any]:
    """The initial states a recurrent call is given (h, then an LSTM's c), none where it is
    given zeros or nothing.

    Raises:
        Unsupported: zeros for some of its states and others for the rest.
    """
    calls = [member for member in members if op_name(member) in _RECURRENT_CALLS]
    if len(calls) != 1:
        return []
    hx = calls[0].args[1]
    given = list(hx) if isinstance(hx, (list, tuple)) else [hx]
    passed = [state for state in given if state not in constants]
    if passed and len(passed) != len(given):
        raise Unsupported(
            f"passes {path!r} zeros for some of its initial states and not for the others; "
            "a Keras layer is given all of them or none"
        )
    return passed


def pass_initial_states(
    path: str,
    child: Any,
    initial: list[Any],
    made: list[LayerRecord],
    tensors: Tensors,
    names: Names,
) -> list[LayerRecord]:
    """``made`` with each recurrent record reading its entries of the ``initial`` states
    (stacked (layers * directions, B, H), as torch takes them), after the records
    selecting them.

    Raises:
        Unsupported: initial states not stacked so.
    """
    for state in initial:
        if not tensors.is_swapped(state):
            raise Unsupported(
                f"passes {path!r} initial states that are not stacked (layers * directions, "
                "batch, hidden) with a free batch axis"
            )
    layers = [record for record in made if record.kind == "recurrent"]
    directions = 2 if child.bidirectional else 1
    selects: list[LayerRecord] = []
    reads: dict[str, tuple[str, ...]] = {}
    for number, layer in enumerate(layers):
        entries = []
        for direction in range(directions):  # Keras order: h, c per direction, forward first
            k = number * directions + direction
            for which, state in enumerate(initial):
                options = {"axis": 1, "start": k, "stop": None, "step": 1, "keep_axis": False}
                name = names(f"{path}_initial_{'hc'[which]}_{k}")
                selects.append(
                    LayerRecord(name, "slice", "select", (tensors.name(state),), options)
                )
                entries.append(name)
        reads[layer.name] = tuple(entries)
    return [
        *selects,
        *(
            dataclasses.replace(record, inputs=(record.inputs[0], *reads[record.name]))
            if record.name in reads
            else record
            for record in made
        ),
    ]


def _stack(name: str, entries: list[str], names: Names) -> list[LayerRecord]:
    """The records stacking state tensors (B, H) on axis 1: (B, entries, H)."""
    parts = [
        LayerRecord(names(f"{name}_{k}"), "reshape", "reshape", (entry,), {"target_shape": (1, -1)})
        for k, entry in enumerate(entries)
    ]
    if len(parts) == 1:
        return [dataclasses.replace(parts[0], name=name)]
    options = {"axis": -2, "mask_combine": "any"}
    inputs = tuple(part.name for part in parts)
    return [*parts, LayerRecord(name, "concatenate", "stack", inputs, options)]


def state_entry(state: Any, user: Any, count: int) -> int | None:
    """``k`` of ``h_n[k]`` (0 <= k < count), None for another use of the stack."""
    if count == 1 and _squeezes_first_axis(state, user):  # h_n.squeeze(0): the one entry
        return 0
    selects = (
        not is_tuple_getitem(user)
        and "select" in str(user.target)
        and len(user.args) == 3
        and user.args[0] is state
        and user.args[1] == 0
        and isinstance(user.args[2], int)
    )
    if not selects:  # used whole, or returned as torch stacks them
        return None
    k = int(user.args[2])
    return k + count if k < 0 else k


def zero_tensors(graph: Any) -> set[Any]:
    """The nodes of ``graph`` computing tensors of zeros from nothing but sizes
    (``torch.zeros(layers, x.size(0), hidden).to(x.device)``, ``x.new_zeros(...)``): passed
    as a recurrent call's initial states, they mean what passing none means."""
    zeros: set[Any] = set()
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        op, args = op_name(node), node.args
        if (
            op in _ZEROS
            or (op in _FULL and len(args) > _FULL[op] and args[_FULL[op]] == 0)
            or (op in _SAME_VALUES and args and args[0] in zeros)
        ):
            zeros.add(node)
    return zeros


def _squeezes_first_axis(state: Any, user: Any) -> bool:
    """Whether ``user`` is ``state.squeeze(0)`` (``aten.squeeze.dim``/``.dims`` on axis 0)."""
    if "squeeze" not in str(user.target) or len(user.args) != 2 or user.args[0] is not state:
        return False
    axes = user.args[1]
    return list(axes) == [0] if isinstance(axes, (list, tuple)) else axes == 0


__all__ = ["initial_states", "pass_initial_states", "read_states", "state_entry", "zero_tensors"]
