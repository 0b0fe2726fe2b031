"""A call of a module the package reads whole (an ``nn.LSTM``, an ``nn.Linear``, an
attention module...), in a captured ``forward``: the records of that module, read on the
tensor the call gives it, with what the call's results are used for (a recurrent module's
final states, its initial states); a later call of the same module shares the layer of
its first (:mod:`xframe_bilstm.shared_layers`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._imports import require
from ..graph import LayerRecord
from ..shared_layers import calling_again
from .capture_attention import attention_output, attention_record, is_attention_module
from .capture_merged_steps import module_on_merged, per_step, states_per_step
from .capture_ops import Tensors, Unsupported, is_tuple_getitem
from .capture_positions import looked_up
from .capture_states import initial_states, pass_initial_states, read_states
from .capture_tensors import Names
from .capture_time_major import module_on_record_axes


def poison(members: list[Any], tensors: Tensors, input_name: str) -> None:
    """Give a call that could not be read a stand-in tensor, so later operations are read."""
    for member in members:
        tensors.names.setdefault(member, input_name)


def read_call(
    module: Any,
    path: str,
    key: str,
    members: list[Any],
    constants: set[Any],
    tensors: Tensors,
    records: list[LayerRecord],
    names: Names,
    read_child: Callable[[str, Any, str], list[LayerRecord]],
    calls: dict[Any, list[LayerRecord]],
) -> None:
    """The records of one call of a module read whole; ``constants`` are the nodes that are
    not the call's data (its parameters, and zeros given as a recurrent call's states).
    ``calls`` holds each module's records at its first call, which a later call's share."""
    torch = require("torch")
    child = module.get_submodule(path)
    inside = set(members)
    given = list(
        dict.fromkeys(
            arg
            for member in members
            for arg in member.all_input_nodes
            if arg not in inside
            and arg not in constants
            and isinstance(arg.meta.get("val"), torch.Tensor)
        )
    )
    used = [m for m in members if any(user not in inside for user in m.users)]
    call = key.rsplit("@", 1)[1] if "@" in key else ""
    # A module may name its records (the ONNX interpreter's, after the graph's node).
    named = getattr(child, "record_name", None) or path
    if is_attention_module(child):
        output = attention_output(path, members, used)
        record = attention_record(
            names(f"{named}_{call}" if call else named), path, child, members, given, tensors
        )
        made = [record]
        (record,) = calling_again(made, calls.setdefault(path, made))
        records.append(record)
        tensors.names[output] = record.name
        return
    recurrent = isinstance(child, torch.nn.RNNBase)
    initial = initial_states(path, members, constants) if recurrent else []
    given = [node for node in given if node not in initial]
    if len(given) != 1:
        raise Unsupported(f"passes {len(given)} tensors to {path!r}")
    states: list[Any] = []
    if recurrent:  # h_n[k] (and c_n[k]) are read as the layers' return_state outputs
        states = [m for m in used if is_tuple_getitem(m) and m.args[1] in (1, 2)]
        used = [m for m in used if m not in states]
    if len(used) != (0 if states and not used else 1):
        raise Unsupported(f"uses {len(used)} results of {path!r}")
    if isinstance(child, torch.nn.Embedding) and given[0].name in tensors.positions:
        return looked_up(names(path), child, given[0], used[0], tensors, records)
    child = module_on_record_axes(path, child, given[0], used[0] if used else None, tensors)
    made = read_child(names(f"{named}_{call}" if call else named), child, tensors.name(given[0]))
    merged = module_on_merged(path, child, given[0], tensors, states=bool(initial))
    made = per_step(made) if merged else made  # a convolution or an LSTM over each word
    output = made[-1].name  # the call's output: states stacked whole come after it
    if states and merged:
        made += states_per_step(named, child, states, made, tensors, names)
    elif states:
        made = read_states(named, child, states, made, tensors, names)
    if initial:
        made = pass_initial_states(named, child, initial, made, tensors, names)
    made = calling_again(made, calls.setdefault(path, made))
    records.extend(made)
    names.taken.update(record.name for record in made)
    if used:
        tensors.names[used[0]] = output


__all__ = ["poison", "read_call"]
