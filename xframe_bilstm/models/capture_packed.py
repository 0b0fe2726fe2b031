"""torch's packed sequences in a captured ``forward(x, lengths)``.

``torch.export`` cannot capture ``pack_padded_sequence``: a packed sequence's batch sizes
come from the lengths' values, which a capture does not know. So while ``forward`` is
captured, ``pack_padded_sequence`` and ``pad_packed_sequence`` are replaced by stand-ins,
where ``forward`` finds them (``torch.nn.utils.rnn`` and the globals of every module's
``forward``):

- ``pack_padded_sequence(x, lengths)`` marks ``x`` with an operation of this package,
  ``xframe_bilstm::packed(x, lengths)``, which returns ``x``; the walker reads it as a
  ``lengths_mask`` record (``x`` masked after each row's length, as packing leaves those
  steps out);
- a recurrent module given the packed sequence runs on the marked tensor (the records read
  its weights, not the numbers), and returns its output packed in turn;
- ``pad_packed_sequence`` marks the output with ``xframe_bilstm::padded``, read as an
  ``end_mask`` record: the recurrent layer gives zeros on padded steps, as padding does,
  and nothing after it sees the mask.

The lengths are one of ``forward``'s inputs, never the first (:mod:`.forward_inputs`);
only packing may read them (moving them to the CPU or to int64 computes nothing). Or
``forward`` computes them, as a tagger given its ids alone counts them, ``(ids !=
0).sum(1)``: the ``lengths_mask`` record then reads that tensor of the records, one count
per row of the batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

from .._imports import require
from ..graph import LayerRecord, ModelGraph
from ..masks import longest_first
from .capture_lengths import LengthsUse
from .capture_rows import RowOrders
from .capture_tensors import Names, Tensors, Unsupported, op_name

PACKED = "xframe_bilstm.packed"
PADDED = "xframe_bilstm.padded"
# What reads the lengths without computing: dtype and device moves.
LENGTHS_MOVES = ("to", "_to_copy", "clone", "contiguous", "detach", "alias", "lift_fresh_copy")


def example_lengths(batch: int, steps: int) -> Any:
    """Lengths of right-padded rows, longest first, as ``enforce_sorted`` wants them."""
    return require("torch").as_tensor(longest_first(batch, steps))


def read_lengths(
    graph: Any, lengths: Any, rows: RowOrders, tensors: Tensors, name: str
) -> LayerRecord:
    """The input record ``name`` of the rows' lengths (``lengths``: their input's node),
    naming them and the lengths ``forward`` sorts itself (``rows``)."""
    record = _lengths_record(name, graph, rows.lengths)
    tensors.names.update(dict.fromkeys([lengths, *rows.lengths], record.name))
    return record


def _lengths_record(name: str, graph: Any, sorted_here: set[Any]) -> LayerRecord:
    """The graph's input of the rows' lengths, one integer per row; ``descending`` where
    ``forward`` packs them as given with ``enforce_sorted=True``, so the rows must come
    longest first (``sorted_here``: the lengths ``forward`` sorts itself)."""
    options: dict[str, Any] = {"shape": (), "dtype": "int64"}
    for node in graph.nodes:
        if node.op == "call_function" and op_name(node).startswith(PACKED) and node.args[2]:
            given = node.args[1]
            while op_name(given).split(".")[-1] in LENGTHS_MOVES:  # lengths.cpu()
                given = given.args[0]
            options["descending"] = options.get("descending", False) or given not in sorted_here
    return LayerRecord(name, "input", "InputLayer", options=options)


def read_packing(
    node: Any, tensors: Tensors, names: Names, use: LengthsUse
) -> list[LayerRecord] | None:
    """The records of a node that takes the lengths (``use.lengths``: the input and its
    moves, to which a move is added): a ``lengths_mask`` or ``end_mask`` record, the
    lengths as numbers or compared with the steps (:mod:`.capture_lengths`), or none for a
    move or the steps; None where it takes no lengths.

    Raises:
        Unsupported: it computes with the lengths otherwise, or pads with another value
            than 0.
    """
    if use.is_steps(node):
        return []
    if not use.reads(node):
        return _computed_packing(node, tensors, names)
    if use.last(node):  # lengths - 1, for out[torch.arange(B), lengths - 1]
        return []
    shifted = use.with_number(node, tensors, names)  # lengths - 1, for out.gather(1, ...)
    if shifted is not None:
        return shifted
    last = use.last_steps(node, tensors, names)  # out[torch.arange(B), lengths - 1]
    if last is not None:
        return last
    op = op_name(node)
    value = node.meta.get("val")
    if len(node.all_input_nodes) == 1 and getattr(value, "is_floating_point", lambda: 0)():
        return use.as_numbers(node, tensors, names)  # lengths.float(), lengths[:, None]...
    if op.split(".")[-1] in LENGTHS_MOVES and len(node.all_input_nodes) == 1:
        use.lengths.add(node)
        tensors.names[node] = tensors.name(node.all_input_nodes[0])
        return []
    if op in ("aten.unsqueeze", "aten.view", "aten.reshape") and use.column(node, tensors):
        use.lengths.add(node)  # lengths[:, None]: read once made numbers or compared
        tensors.names[node] = tensors.name(node.all_input_nodes[0])
        return []
    compared = use.compared(node, tensors, names)  # arange(T) < lengths[:, None]
    if compared is not None:
        return compared
    x = node.args[0]
    if op.startswith(PACKED) and node.args[1] in use.lengths:
        reads = (tensors.name(x), tensors.name(node.args[1]))
        record = LayerRecord(names(node.name), "lengths_mask", "LengthsMask", reads)
    elif op.startswith(PADDED) and node.args[1] in use.lengths:
        if float(node.args[2]) != 0.0:
            raise Unsupported(
                f"pads a packed sequence with {node.args[2]}; the port's padded steps are 0"
            )
        record = LayerRecord(names(node.name), "end_mask", "EndMask", (tensors.name(x),))
    else:
        raise Unsupported(f"computes with the lengths ({op}); only pack_padded_sequence may")
    return [record]


def _computed_packing(node: Any, tensors: Tensors, names: Names) -> list[LayerRecord] | None:
    """The ``lengths_mask`` or ``end_mask`` record of a packing by lengths ``forward``
    computes (``(ids != 0).sum(1)``, a character LSTM's word lengths), read as any tensor
    of the records; None for a node that is no packing."""
    op = op_name(node)
    if not op.startswith((PACKED, PADDED)):
        return None
    x, lengths = node.args[0], node.args[1]
    if op.startswith(PADDED):
        return [LayerRecord(names(node.name), "end_mask", "EndMask", (tensors.name(x),))]
    first, second = tensors.shapes[lengths.name]
    if first != (tensors.batches[0],) or second not in (None, (tensors.batches[1],)):
        raise Unsupported(
            "packs a sequence by lengths computed in forward for other rows than the "
            "batch's (each word's characters, the batch and time merged); lengths of the "
            "batch's rows are read"
        )
    reads = (tensors.name(x), tensors.name(lengths))
    return [LayerRecord(names(node.name), "lengths_mask", "LengthsMask", reads)]


def padded_with_zeros(graph: ModelGraph) -> ModelGraph:
    """``graph`` with its recurrent layers over packed steps giving zeros on padded steps,
    as ``pad_packed_sequence`` fills them (a ``Bidirectional`` layer always does)."""
    layers = []
    for record in graph.layers:
        layer = record.recurrent
        if (
            layer is not None
            and layer.direction != "bidirectional"
            and graph.masked(record.inputs[0])
        ):
            layer = dataclasses.replace(layer, zero_masked_outputs=True)
            record = dataclasses.replace(record, recurrent=layer)
        layers.append(record)
    return dataclasses.replace(graph, layers=tuple(layers))


@functools.cache
def _operations() -> tuple[Any, Any]:
    """The two marking operations, registered once with torch."""
    torch = require("torch")

    packed = torch.library.custom_op(
        "xframe_bilstm::packed",
        lambda x, lengths, enforce_sorted: x.clone(),
        mutates_args=(),
        schema="(Tensor x, Tensor lengths, bool enforce_sorted) -> Tensor",
    )
    padded = torch.library.custom_op(
        "xframe_bilstm::padded",
        lambda x, lengths, padding_value: x.clone(),
        mutates_args=(),
        schema="(Tensor x, Tensor lengths, float padding_value) -> Tensor",
    )
    packed.register_fake(lambda x, lengths, enforce_sorted: torch.empty_like(x))
    padded.register_fake(lambda x, lengths, padding_value: torch.empty_like(x))
    return packed, padded


class _Packed:
    """A packed sequence during a capture: the padded tensor, its layout and lengths."""

    def __init__(self, tensor: Any, lengths: Any, batch_first: bool) -> None:
        self.tensor, self.lengths, self.batch_first = tensor, lengths, batch_first

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"forward reads a packed sequence's {name!r}; only a recurrent module and "
            "pad_packed_sequence are read from a packed sequence"
        )

    def laid_out(self, batch_first: bool) -> Any:
        """The tensor, batch first or time first."""
        same = self.batch_first == batch_first
        return self.tensor if same else self.tensor.transpose(0, 1)


def _pack(input: Any, lengths: Any, batch_first: bool = False, enforce_sorted: bool = True) -> Any:
    packed, _ = _operations()
    return _Packed(packed(input, lengths, bool(enforce_sorted)), lengths, batch_first)


def _pad(
    sequence: Any,
    batch_first: bool = False,
    padding_value: float = 0.0,
    total_length: int | None = None,
) -> tuple[Any, Any]:
    if not isinstance(sequence, _Packed):
        raise TypeError(f"pad_packed_sequence of a {type(sequence).__name__}, not packed")
    tensor = sequence.laid_out(batch_first)
    steps = tensor.shape[1 if batch_first else 0]
    if total_length is not None and total_length != steps:
        raise ValueError(
            f"pad_packed_sequence pads to total_length={total_length}, not the input's "
            f"{steps} steps; a port pads to its input's steps (total_length=x.size(1))"
        )
    _, padded = _operations()
    return padded(tensor, sequence.lengths, float(padding_value)), sequence.lengths


@contextlib.contextmanager
def packing_captured(module: Any) -> Iterator[None]:
    """Within: ``module.forward`` packs with the stand-ins, and its recurrent modules take
    and return the stand-in packed sequences."""
    torch = require("torch")
    utils = torch.nn.utils.rnn
    stand_ins = {utils.pack_padded_sequence: _pack, utils.pad_packed_sequence: _pad}
    namespaces = [vars(utils)] + [type(child).forward.__globals__ for child in module.modules()]
    saved = [
        (namespace, key, value)
        for namespace in {id(n): n for n in namespaces}.values()
        for key, value in list(namespace.items())
        if callable(value) and any(value is original for original in stand_ins)
    ]
    hooks = []
    for child in module.modules():
        if isinstance(child, torch.nn.RNNBase):
            hooks += [
                child.register_forward_pre_hook(_unpack),
                child.register_forward_hook(_repack),
            ]
    try:
        for namespace, key, value in saved:
            namespace[key] = stand_ins[value]
        yield
    finally:
        for namespace, key, value in saved:
            namespace[key] = value
        for hook in hooks:
            hook.remove()
        for child in module.modules():  # a capture that failed inside a call leaves its own
            child.__dict__.pop("_packed_calls", None)


def _unpack(child: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    given = args[0] if args and isinstance(args[0], _Packed) else None
    child.__dict__.setdefault("_packed_calls", []).append(given)
    if given is not None:
        return (given.laid_out(child.batch_first), *args[1:])
    return None


def _repack(child: Any, args: tuple[Any, ...], output: Any) -> Any:
    given = child.__dict__["_packed_calls"].pop()
    if not child.__dict__["_packed_calls"]:
        del child.__dict__["_packed_calls"]
    if given is not None:
        return (_Packed(output[0], given.lengths, child.batch_first), *output[1:])
    return None


__all__ = [
    "example_lengths",
    "packing_captured",
    "padded_with_zeros",
    "read_packing",
]
