"""A framework-free description of a whole model: layer records wired into a graph.

Rules of this module:

- A graph is data only: its :class:`~xframe_bilstm.records.LayerRecord` objects (kinds,
  options, numpy weights, canonical recurrent layers), its inputs and its outputs.
  Readers (:mod:`xframe_bilstm.keras_files`, :mod:`xframe_bilstm.models.live`,
  :mod:`xframe_bilstm.models.torch_graph`) fill it in; builders
  (:mod:`xframe_bilstm.models.to_torch`, :mod:`xframe_bilstm.reference`, the adapters)
  consume it.
- ``inputs`` and ``outputs`` name tensors (:func:`~xframe_bilstm.records.tensor_name`).
- ``layers`` are in an order where every layer comes after the layers it reads.
- Masks are not stored: they follow from the layers (``Embedding(mask_zero=True)`` and
  ``Masking`` make them; ``mask_rule`` says how each kind passes them on), as in Keras.

The records, kinds and tensor names live in :mod:`xframe_bilstm.records`; they are
imported from here too.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .canonical import RecurrentStack, is_float_dtype
from .errors import UnsupportedFeatureError
from .records import (
    ATTENTION_KINDS,
    KINDS,
    MASK_RULES,
    MULTI_INPUT_KINDS,
    SHAPE_KINDS,
    LayerRecord,
    state_count,
    tensor_layer,
    tensor_name,
)

# Kinds that move their inputs' values without computing with them (ids made (B, 1), cut,
# joined or put time first): what reads ids through them reads the ids.
MOVING_KINDS = (
    "reshape",
    "permute",
    "slice",
    "slice_to",
    "expand",
    "repeat",
    "identity",
    "concatenate",
    "time_first",
)


@dataclass(frozen=True)
class ModelGraph:
    """A whole model: its layers in dependency order, its inputs and its outputs.

    ``inputs`` and ``outputs`` name tensors (the input layers, and the tensors the model
    returns, see :func:`tensor_name`), in the model's own order. ``keras_major`` is the
    Keras version the model was saved with (2 or 3): some names mean different things in
    each. ``captured_by`` names the capture that read a torch ``forward``
    (``"torch.export"`` or ``"torch.fx"``), None where none ran. ``labels`` name the
    outputs in reports (default ``output 'tensor'``; a stack's are ``output``, ``h``...).
    ``arguments``, for a torch ``forward`` taking a tuple (an LSTM's ``hidden``, ``(h,
    c)``), says how many inputs each of its arguments takes, in order; empty where each
    takes one.

    Example:
        >>> graph = ModelGraph("m", (LayerRecord("x", "input", "InputLayer",
        ...                           options={"shape": (None, 3), "dtype": "float32"}),),
        ...                    inputs=("x",), outputs=("x",))
        >>> graph.layer("x").kind, graph.masked("x")
        ('input', False)
    """

    name: str
    layers: tuple[LayerRecord, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    keras_major: int = 3
    source: str = "model"
    captured_by: str | None = None
    labels: tuple[str, ...] = ()
    arguments: tuple[int, ...] = ()

    @property
    def output_labels(self) -> tuple[str, ...]:
        """What reports call each output, in order."""
        return self.labels or tuple(f"output {name!r}" for name in self.outputs)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        names: set[str] = set()
        for record in self.layers:
            for name in record.inputs:
                if name not in seen:
                    raise UnsupportedFeatureError(
                        f"{self.source}: layer {record.name!r} reads {name!r}, which is not "
                        f"{_no_tensor(self, name)}"
                    )
            if record.name in names:
                raise UnsupportedFeatureError(f"{self.source}: two layers named {record.name!r}")
            if record.shares:
                _check_shared(self, record, names)
            names.add(record.name)
            seen.update(record.outputs)
        for name in (*self.inputs, *self.outputs):
            if name not in seen:
                raise UnsupportedFeatureError(
                    f"{self.source}: the model reads {name!r}, which is not "
                    f"{_no_tensor(self, name)}"
                )

    def layer(self, name: str) -> LayerRecord:
        """The layer named ``name``, or the layer making tensor ``name`` (``"lstm:1"``)."""
        for record in self.layers:
            if record.name == name:
                return record
        for record in self.layers:
            if name in record.outputs:
                return record
        raise KeyError(name)

    def time_major(self, name: str) -> bool:
        """Whether the input ``name`` is fed time-major, (time, batch, ...), as a torch
        ``forward`` written for ``batch_first=False`` takes it: a ``time_first`` record
        alone reads it, giving the other records its batch-major tensor."""
        readers = [r for r in self.layers if name in r.inputs]
        return bool(readers) and all(r.kind == "time_first" for r in readers)

    def holds_lengths(self, name: str) -> bool:
        """Whether the input ``name`` holds the rows' lengths a ``lengths_mask`` (a torch
        packed sequence's) or ``valid_steps`` reads, one integer per row."""
        kinds = ("lengths_mask", "valid_steps")
        return any(r.kind in kinds and r.inputs[1] == name for r in self.layers)

    def ids_read_as_numbers(self) -> list[str]:
        """The layers reading an integer input's values as numbers (``speaker_id * 0.5``),
        past the layers that only move ids (reshapes, slices, joins), not as ids (an
        Embedding's lookup, a comparison, lengths, a batch size).

        Example:
            >>> ids = LayerRecord("ids", "input", "InputLayer",
            ...                   options={"shape": (None,), "dtype": "int64"})
            >>> half = LayerRecord("half", "scalar_op", "mul", ("ids",),
            ...                    {"op": "multiply", "constant": 0.5, "reverse": False})
            >>> ModelGraph("m", (ids, half), ("ids",), ("half",)).ids_read_as_numbers()
            ['half']
        """
        reading = ("embedding", "where", "lengths_mask", "valid_steps", "broadcast", "custom")
        carried = [
            r.name
            for r in self.layers
            if r.kind == "input" and not is_float_dtype(str(r.options["dtype"]))
        ]
        found: list[str] = []
        while carried:
            name = carried.pop()
            for record in self.layers:
                inner = record.options.get("layer") if record.kind == "time_distributed" else None
                if name not in record.inputs or getattr(inner, "kind", "") == "embedding":
                    continue
                if record.kind in MOVING_KINDS:
                    carried.append(record.name)
                elif record.kind in ("gather", "slice_to") and record.inputs[0] != name:
                    continue  # positions, not values
                elif record.kind not in reading and record.name not in found:
                    found.append(record.name)
        return found

    def masked(self, name: str) -> bool:
        """Whether the tensor ``name`` (a layer's output 0 when named by the layer) carries a
        Keras mask."""
        return self._masks()[name]

    def _masks(self) -> dict[str, bool]:
        masks: dict[str, bool] = {}
        for record in self.layers:
            # Final states carry no mask (Keras's compute_mask gives None for them).
            masks.update(dict.fromkeys(record.outputs[1:], False))
            incoming = [masks[name] for name in record.inputs]
            rule = record.mask_rule
            if record.kind == "input":
                masks[record.name] = bool(record.options.get("lengths"))
            elif rule == "make":
                masks[record.name] = record.makes_mask or bool(incoming and incoming[0])
            elif rule == "keep":
                masks[record.name] = bool(incoming and incoming[0])
            elif rule == "sequences":
                masks[record.name] = incoming[0] and bool(record.options["return_sequences"])
            elif rule == "merge":
                masks[record.name] = any(incoming)
            else:
                masks[record.name] = False
        return masks

    def as_stack(self) -> RecurrentStack | None:
        """The canonical stack, when the model is one input, then recurrent layers and
        inference-time identities each reading the one before (none time-major, all but the
        last returning sequences) and the last one's outputs; None for anything else.

        Final states are a stack's outputs only where the input takes lengths, as
        :func:`~xframe_bilstm.stack_graph.stack_graph` draws it: a model read from a
        framework names each output by its tensor, so one returning states stays a model.
        """
        first, *rest = self.layers
        if self.inputs != (first.name,) or any(
            record.kind not in ("recurrent", "identity") or record.inputs != (before.name,)
            for before, record in zip(self.layers, rest)
        ):
            return None
        chain = [record for record in rest if record.recurrent is not None]
        if not chain or self.outputs != rest[-1].outputs:
            return None
        inner, last = [record.options for record in chain[:-1]], chain[-1].options
        if any(options.get("time_major") for options in (*inner, last)):
            return None
        if not all(options.get("return_sequences") for options in inner):
            return None
        if last.get("return_state") and not first.options.get("lengths"):
            return None
        return RecurrentStack(
            tuple(record.recurrent for record in chain if record.recurrent is not None),
            return_sequences=bool(last.get("return_sequences")),
            return_state=bool(last.get("return_state")),
            stateful=bool(last.get("stateful")),
        )


def _check_shared(graph: ModelGraph, record: LayerRecord, earlier: set[str]) -> None:
    """Raise unless ``record`` calls again an earlier layer of its kind, class, options
    and weights (see :class:`~xframe_bilstm.records.LayerRecord`)."""
    where = f"{graph.source}: layer {record.name!r} shares {record.shares!r}"
    if record.shares not in earlier:
        raise UnsupportedFeatureError(f"{where}, which is not an earlier layer")
    shared = graph.layer(record.shares)
    if shared.shares:
        raise UnsupportedFeatureError(f"{where}, which shares {shared.shares!r}: name that one")
    if layer_layout(record) != layer_layout(shared):
        raise UnsupportedFeatureError(
            f"{where}, which differs from it in kind, class, options or weights' shapes"
        )


def layer_layout(record: LayerRecord) -> tuple[Any, ...]:
    """What a record sharing another's layer has as that one has it: all but its name and
    inputs, its weights by their shapes."""
    shapes = {key: np.shape(value) for key, value in record.weights.items()}
    layer, cell = record.recurrent, {}
    if layer is not None:
        cell = {f.name: getattr(layer, f.name) for f in fields(layer) if f.name != "weights"}
        shapes.update(
            (f"{index}.{key}", np.shape(value))
            for index, direction in enumerate(layer.weights)
            for key, value in vars(direction).items()
        )
    options = {key: _comparable(value) for key, value in record.options.items()}
    return record.kind, record.class_name, options, shapes, cell


def _comparable(option: Any) -> Any:
    """An option as ``==`` compares it (a TimeDistributed's inner layer is a record)."""
    if isinstance(option, LayerRecord):
        return layer_layout(option)
    return option.tolist() if isinstance(option, np.ndarray) else option


def _no_tensor(graph: ModelGraph, name: str) -> str:
    """Why ``name`` is not a tensor the graph has made so far, for messages."""
    layer, _, index = name.rpartition(":")
    try:
        record = graph.layer(layer) if index.isdigit() else None
    except KeyError:
        record = None
    if record is None:
        return "an earlier layer of the model"
    return (
        f"an output of layer {layer!r} ({record.class_name}), which returns "
        f"{len(record.outputs)} tensor(s)"
    )


__all__ = [
    "ATTENTION_KINDS",
    "KINDS",
    "MASK_RULES",
    "MOVING_KINDS",
    "MULTI_INPUT_KINDS",
    "SHAPE_KINDS",
    "LayerRecord",
    "ModelGraph",
    "layer_layout",
    "state_count",
    "tensor_layer",
    "tensor_name",
]
