"""The nodes of a ``torch.export`` capture, read into layer records in graph order.

See :mod:`.torch_capture` for the rules; this module walks one captured graph: module
calls the package reads become those modules' records, the rest goes operation by
operation through :mod:`.capture_ops`, and what cannot be read is collected, not raised
one by one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .._imports import require
from ..errors import UnsupportedFeatureError
from ..graph import LayerRecord, ModelGraph
from ..shared_layers import calling_again
from .capture_attention import is_attention_module
from .capture_bias import dense_biases
from .capture_broadcast import broadcast_held, held_steps
from .capture_calls import poison, read_call
from .capture_cells import CellLoop, cell_calls, cell_loops, loop_layer, refused, same_loops
from .capture_functional import FUNCTIONAL, functional_module
from .capture_fx import live_nodes
from .capture_lengths import LengthsUse
from .capture_merged_steps import mark_merged_steps, module_on_merged, per_step
from .capture_ops import Tensors, Unsupported, is_tuple_getitem, op_name, op_records
from .capture_outputs import read_outputs
from .capture_packed import padded_with_zeros, read_lengths, read_packing
from .capture_positions import read_positions
from .capture_rows import row_orders
from .capture_slice_to import slice_to_beside
from .capture_split import is_piece
from .capture_states import zero_tensors
from .capture_tensors import (
    Names,
    check_fixed_positions,
    fold_held,
    held_tensors,
    varying_constants,
)
from .capture_time_major import mark_time_major, module_on_record_axes, touches_time_major
from .capture_where import (
    READERS,
    Mask,
    is_mask_as_numbers,
    masks_read_as_numbers,
    numbers_record,
    read_condition,
    where_records,
)
from .forward_inputs import ForwardInputs

LeafTest = Callable[[Any], bool]
SOURCE_KEY = "source"  # the annotation that names where an operation came from
ReadChild = Callable[[str, Any, str], list[LayerRecord]]


def source_line(node: Any) -> str:
    """``file.py:12 (y = x @ w)``: the line of the user's code an operation came from, or
    what the module named as its source (``torch.fx.traceback.annotate({SOURCE_KEY: ...})``,
    as the ONNX interpreter names each graph node)."""
    named = (node.meta.get("custom") or {}).get(SOURCE_KEY)
    if named:
        return str(named)
    torch = require("torch")
    library = os.path.dirname(str(torch.__file__))
    trace = str(node.meta.get("stack_trace") or "")
    frames: list[tuple[str, str]] = []
    lines = trace.splitlines()
    for index, line in enumerate(lines):
        text = line.strip()
        if text.startswith('File "') and ", line " in text:
            path = text[len('File "') : text.index('", line ')]
            number = text.split(", line ")[1].split(",")[0]
            code = lines[index + 1].strip() if index + 1 < len(lines) else ""
            if not path.startswith(library):
                frames.append((f"{os.path.basename(path)}:{number}", code))
    if not frames:
        return "(no source line recorded)"
    where, code = frames[-1]
    return f"{where} ({code})" if code else where


class ForwardRefusal(UnsupportedFeatureError):
    """What a captured ``forward``'s operations do that no Keras port computes: ``items``,
    each ``"what at where"``, for a caller to say in its own words."""

    def __init__(self, module: Any, items: list[str]) -> None:
        self.items = items
        super().__init__(
            f"{type(module).__name__}.forward cannot be read as Keras layers: "
            f"{'; '.join(items)}. Rewrite them with supported operations, or convert the "
            "recurrent submodule alone (torch_to_keras(module, submodule=...)) and port the "
            "rest by hand."
        )


def refusal(module: Any, found: list[tuple[str, Any]]) -> ForwardRefusal:
    """One error listing what each operation does that no Keras port computes, and where."""
    return ForwardRefusal(module, [f"{what} at {source_line(node)}" for what, node in found])


def record_for(
    records: list[LayerRecord],
    tensors: Tensors,
    node: Any,
    names: Names,
    previous: str,
    calls: dict[Any, list[LayerRecord]],
) -> None:
    """Append the records of one operation; its tensor is the last one's (or its input's)."""
    made = names.claim(op_records(node, names(node.name), tensors) or [])
    made = _reading_held_again(made, node, tensors, calls)
    if made:
        records.extend(made)
        tensors.names[node] = made[-1].name
    else:
        tensors.names[node] = previous


def _reading_held_again(
    made: list[LayerRecord], node: Any, tensors: Tensors, calls: dict[Any, list[LayerRecord]]
) -> list[LayerRecord]:
    """An operation's records, sharing those of an earlier one of its kind reading the same
    tensors the module holds (``F.embedding(ids, self.table)`` on each input; an ONNX
    graph's ``Gather`` of one initializer)."""
    held = tuple(arg.name for arg in node.all_input_nodes if tensors.holds(arg))
    if not held or not made:
        return made
    return calling_again(made, calls.setdefault((op_name(node), held), made))


def _shapes(exported: Any) -> dict[str, tuple[int, ...]]:
    torch = require("torch")
    return {
        node.name: tuple(int(size) for size in node.meta["val"].shape)
        for node in exported.graph.nodes
        if isinstance(node.meta.get("val"), torch.Tensor)
    }


def _same_graph(first: Any, second: Any) -> bool:
    def outline(exported: Any) -> list[tuple[str, str]]:
        return [(node.name, str(node.target)) for node in exported.graph.nodes]

    return outline(first) == outline(second)


def _groups(module: Any, graph: Any, leaf: Callable[[Any], bool]) -> dict[Any, tuple[str, str]]:
    """Each node made by a call of a module read whole: node -> (call key, module path)."""
    groups = {}
    for node in graph.nodes:
        for key, (path, _type) in (node.meta.get("nn_module_stack") or {}).items():
            if not path:
                continue
            try:
                child = module.get_submodule(path)
            except AttributeError:
                continue
            if leaf(child):
                groups[node] = (key, path)
                break
    return groups


def read_captured(
    module: Any,
    exported: Any,
    second: Any,
    inputs: ForwardInputs,
    *,
    name: str,
    is_leaf: LeafTest,
    read_child: ReadChild,
    batches: tuple[int, int],
) -> ModelGraph:
    """The model graph of a capture (``second``: the capture at the other sizes, or None)."""
    torch = require("torch")
    graph = exported.graph
    loops = _loops(module, exported, second)
    if second is not None and not _same_graph(exported, second):
        second = None
    first_shapes, other = _shapes(exported), (_shapes(second) if second is not None else {})
    tensors = Tensors(
        shapes={key: (shape, other.get(key)) for key, shape in first_shapes.items()},
        batches=batches,
        held=held_tensors(exported),
    )
    mark_time_major(tensors)
    mark_merged_steps(graph, tensors)
    names = Names()
    placeholders = [node for node in graph.nodes if node.op == "placeholder"]
    user = [n for n in placeholders if n.name in exported.graph_signature.user_inputs]
    data, given_lengths = inputs.split(user)
    data_names, lengths_names = inputs.split(list(inputs.names or (n.name for n in user)))
    records = [  # one input is "input"; several take forward's names (src, tgt)
        LayerRecord(
            names("input" if len(data) == 1 else given_name),
            "input",
            "InputLayer",
            options={key: value for key, value in options.items() if key != "batch_axis"},
        )
        for given_name, options in zip(data_names, inputs.options)
    ]
    fed = {node: record.name for node, record in zip(data, records)}
    tensors.names.update(fed)
    input_name = records[0].name
    for node in filter(tensors.is_swapped, data):  # (time, batch, ...): read batch-major
        swap = LayerRecord(
            names(f"{fed[node]}_batch_first"), "time_first", "TimeFirst", (fed[node],)
        )
        records.append(swap)
        tensors.names[node] = swap.name
    rows = row_orders(graph, data, given_lengths, batches[0])  # rows sorted by lengths, back
    for node, given_name in zip(given_lengths, lengths_names):  # forward(x, lengths)...
        lengths_name = names("lengths" if len(data) == 1 else given_name)
        records.append(read_lengths(graph, node, rows, tensors, lengths_name))
    found = list(rows.found)
    varying = varying_constants(exported, second)
    for node in (n for n in placeholders if n.name in varying and n.users):
        what = f"reads a constant computed from the input's length ({varying[node.name]})"
        found.append((what, next(iter(node.users))))
    weights = set(placeholders) - set(user)
    zeros = zero_tensors(graph)  # initial states of zeros, read as none
    groups = _groups(module, graph, lambda child: is_leaf(child) or is_attention_module(child))
    live, read = live_nodes(graph), set()
    conditions: dict[Any, Mask] = {}  # boolean masks, read by masked_fill/where
    calls: dict[Any, list[LayerRecord]] = {}  # each layer's records at its first call
    lengths = LengthsUse({*given_lengths, *rows.lengths}, data[0], conditions)  # and moves
    others = {node.name: node for node in second.graph.nodes} if second is not None else {}
    for node in graph.nodes:
        if node.op != "call_function" or node not in live or node in tensors.names or node in zeros:
            continue  # (named already: a state h_n[k], read with its recurrent call)
        if node in rows.ignored or node in rows.aliases:  # sorting rows computes nothing
            if node in rows.aliases:
                tensors.names[node] = tensors.names.get(rows.aliases[node], input_name)
            continue
        if node in groups:
            key, path = groups[node]
            if key in read:
                continue
            read.add(key)
            members = [n for n in graph.nodes if groups.get(n, ("", ""))[0] == key]
            try:
                read_call(
                    module,
                    path,
                    key,
                    members,
                    weights | zeros,
                    tensors,
                    records,
                    names,
                    read_child,
                    calls,
                )
            except (Unsupported, UnsupportedFeatureError) as error:
                found.append((str(error), node))
                poison(members, tensors, input_name)
            continue
        if node in loops:
            if node not in tensors.names:
                _read_loop(node, loops[node], tensors, records, names, read_child, found)
            continue
        value = node.meta.get("val")
        if is_tuple_getitem(node) and not is_piece(node):
            if node.args[1] != 0:
                found.append((f"uses result {node.args[1]} of {op_name(node.args[0])}", node))
            tensors.names[node] = tensors.names.get(node.args[0], input_name)
            continue
        if not isinstance(value, (torch.Tensor, tuple, list)):
            continue  # arithmetic on sizes, as x.size(0) makes
        if fold_held(node, tensors, others.get(node.name)):  # self.embedding.weight.t()
            continue
        try:  # packing; held tensors given the batch axis (self.h0.expand(-1, B, -1)) or
            # cut to the steps; a slice cut to the tensor beside it (skip[..., :x.shape[-1]])
            one = broadcast_held(node, tensors, names, input_name)
            one = one or held_steps(node, tensors, names)
            one = one or slice_to_beside(node, others.get(node.name), tensors, names)
            made = [one] if one else read_packing(node, tensors, names, lengths)
        except Unsupported as error:
            found.append((str(error), node))
            tensors.names[node] = tensors.names.get(node.all_input_nodes[0], input_name)
            continue
        if made is not None:
            records.extend(made)
            tensors.names.update({node: made[-1].name} if made and node not in conditions else {})
            continue
        if read_positions(node, tensors):  # torch.arange(x.size(1)), for a position table
            continue
        first = next((arg for arg in node.all_input_nodes if arg in tensors.names), None)
        previous = tensors.names[first] if first is not None else input_name
        try:
            check_fixed_positions(node, others.get(node.name), tensors)
            if op_name(node) in READERS or is_mask_as_numbers(node, conditions):
                if touches_time_major(node, tensors):
                    raise Unsupported(f"applies {op_name(node)} to a time-major tensor")
                made = names.claim(where_records(node, names(node.name), tensors, conditions))
                records.extend(made)
                tensors.names[node] = made[-1].name
            elif op_name(node) in FUNCTIONAL:  # F.max_pool1d(x, 2): read as nn.MaxPool1d(2)
                child, reads = functional_module(node, tensors)
                child = module_on_record_axes(op_name(node), child, reads, node, tensors)
                made = read_child(names(node.name), child, tensors.name(reads))
                if module_on_merged(op_name(node), child, reads, tensors):
                    made = per_step(made)
                made = _reading_held_again(names.claim(made), node, tensors, calls)
                records.extend(made)
                tensors.names[node] = made[-1].name
            else:
                for mask in masks_read_as_numbers(node, tensors, conditions):  # h * mask
                    numbers = names(f"{mask.name}_numbers")
                    records.append(numbers_record(numbers, conditions[mask], tensors))
                    tensors.names[mask] = numbers
                if not read_condition(node, tensors, conditions):
                    record_for(records, tensors, node, names, previous, calls)
        except (Unsupported, UnsupportedFeatureError) as error:
            found.append((str(error), node))
            tensors.names[node] = previous
    (results,) = [node.args[0] for node in graph.nodes if node.op == "output"]
    outputs = read_outputs(results, tensors, found, user[0], records, names)
    if found:
        raise refusal(module, found)
    graph = ModelGraph(
        name,
        tuple(dense_biases(records, outputs)),  # x @ W + b: one Dense
        inputs=tuple(fed.get(node, tensors.names[node]) for node in user),
        outputs=outputs,
        source=f"torch {type(module).__name__}",
        arguments=inputs.groups,
    )
    return padded_with_zeros(graph) if given_lengths else graph


def _loops(module: Any, exported: Any, second: Any) -> dict[Any, CellLoop | str]:
    """Each node of a cell's loop over time -> its loop, or why the cell's calls are not
    one (keyed by the calls alone then); see :mod:`.capture_cells`."""
    found = cell_loops(module, exported.graph)
    if not found:
        return {}
    if second is None:
        other: dict[str, CellLoop | str] = {path: "could not be captured" for path in found}
    else:
        other = cell_loops(module, second.graph)
    nodes: dict[Any, CellLoop | str] = {}
    for path, loop in same_loops(found, other).items():
        if isinstance(loop, CellLoop):
            nodes.update(dict.fromkeys([*loop.members, loop.output], loop))
        else:
            calls, zeros = cell_calls(module, exported.graph, path)
            nodes.update(dict.fromkeys(zeros, ""))  # left out with the calls, not named
            nodes.update(dict.fromkeys(calls, refused(module, path, loop)))
    return nodes


def _read_loop(
    node: Any,
    loop: CellLoop | str,
    tensors: Tensors,
    records: list[LayerRecord],
    names: Names,
    read_child: ReadChild,
    found: list[tuple[str, Any]],
) -> None:
    """Read a loop's recurrent layer at its first call (or refuse its calls once)."""
    if isinstance(loop, str):
        if loop and not any(what == loop for what, _ in found):
            found.append((loop, node))
        tensors.names[node] = next(iter(tensors.names.values()))  # a stand-in: read on
        return
    if node is not loop.calls[0]:
        return
    name = names(loop.path)
    made = read_child(name, loop_layer(loop), tensors.name(loop.source))
    if not loop.sequences:  # the last step's h: the output sequence's last step
        options = {"axis": 1, "start": -1, "stop": None, "step": 1, "keep_axis": False}
        last = LayerRecord(names(f"{loop.path}_last"), "slice", "select", (made[-1].name,), options)
        made.append(last)
    records.extend(made)
    names.taken.update(record.name for record in made)
    tensors.names[loop.output] = made[-1].name


__all__ = ["LeafTest", "ReadChild", "read_captured", "record_for", "refusal", "source_line"]
