"""A framework-free description of a whole model: layer records wired into a graph.

Rules of this module:

- It holds data only: layer kinds with their options, numpy weights, and the recurrent
  layers as canonical :class:`~xframe_bilstm.canonical.RecurrentLayer` objects. Readers
  (:mod:`xframe_bilstm.keras_files`, :mod:`xframe_bilstm.models.live`,
  :mod:`xframe_bilstm.models.torch_graph`) fill it in; builders
  (:mod:`xframe_bilstm.models.to_torch`, :mod:`xframe_bilstm.reference`, the adapters)
  consume it.
- Every layer has one output tensor, so a tensor is named by the layer that makes it.
- ``layers`` are in an order where every layer comes after the layers it reads.
- Masks are not stored: they follow from the layers (``Embedding(mask_zero=True)`` and
  ``Masking`` make them; ``mask_rule`` says how each kind passes them on), as in Keras.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .canonical import RecurrentLayer, RecurrentStack
from .errors import UnsupportedFeatureError

KINDS = (
    "input",
    "embedding",
    "masking",
    "identity",
    "recurrent",
    "dense",
    "activation",
    "flatten",
    "reshape",
    "global_pool",
    "concatenate",
    "custom",
)

# How each kind passes on the mask of its (first) input, as the Keras layers do:
# "keep" passes it unchanged, "drop" ends it, "sequences" keeps it only while the layer
# returns sequences, "make" computes a new one, "merge" combines the inputs' masks.
MASK_RULES = {
    "input": "drop",
    "embedding": "make",
    "masking": "make",
    "identity": "keep",
    "recurrent": "sequences",
    "dense": "keep",
    "activation": "keep",
    "flatten": "drop",
    "reshape": "drop",
    "global_pool": "drop",
    "concatenate": "merge",
    # A Keras 3 layer that does not support masking drops the mask (and warns).
    "custom": "drop",
}


@dataclass(frozen=True)
class LayerRecord:
    """One Keras layer: its kind, options, weights and the layers whose outputs it reads.

    ``options`` by kind (all keys always present unless said):

    - ``input``: ``shape`` (without the batch axis, None for any size), ``dtype``.
    - ``embedding``: ``mask_zero``; weights ``embeddings`` (vocabulary, features).
    - ``masking``: ``mask_value``.
    - ``identity``: none, or ``rate`` for a dropout read from torch, kept so that a
      rebuilt model trains as the original.
    - ``recurrent``: ``return_sequences``, ``time_major``, ``unroll``; ``recurrent`` holds
      the canonical layer.
    - ``dense``: ``activation`` (a canonical activation name or ``"softmax"``),
      ``time_distributed``; weights ``kernel`` (D, units) and optionally ``bias``.
    - ``activation``: ``activation``.
    - ``reshape``: ``target_shape``.
    - ``global_pool``: ``op`` (``"max"`` or ``"average"``), ``keepdims``.
    - ``concatenate``: ``axis`` (negative, counted from the end), ``mask_combine``
      (``"any"`` in Keras 3, ``"all"`` in Keras 2).
    - ``custom``: ``config``, ``registered_name``, ``build_torch``, ``build_keras`` (a user's
      class ported by the user's factories; see :mod:`xframe_bilstm.custom`); weights
      ``"0"``, ``"1"``... in the order the layer stores them.

    Example:
        >>> record = LayerRecord("drop", "identity", "Dropout", inputs=("ids",))
        >>> record.mask_rule
        'keep'
    """

    name: str
    kind: str
    class_name: str
    inputs: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    weights: Mapping[str, np.ndarray] = field(default_factory=dict)
    recurrent: RecurrentLayer | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UnsupportedFeatureError(f"layer {self.name!r}: kind {self.kind!r} not in {KINDS}")
        if (self.kind == "recurrent") != (self.recurrent is not None):
            raise UnsupportedFeatureError(
                f"layer {self.name!r}: exactly the recurrent layers hold a RecurrentLayer"
            )

    @property
    def mask_rule(self) -> str:
        return MASK_RULES[self.kind]

    @property
    def makes_mask(self) -> bool:
        """Whether this layer starts a mask (``Masking``, ``Embedding(mask_zero=True)``)."""
        return self.kind == "masking" or (
            self.kind == "embedding" and bool(self.options["mask_zero"])
        )


@dataclass(frozen=True)
class ModelGraph:
    """A whole model: its layers in dependency order, its inputs and its outputs.

    ``inputs`` and ``outputs`` name layers (the input layers, and the layers whose outputs
    the model returns), in the model's own order. ``keras_major`` is the Keras version the
    model was saved with (2 or 3): some names mean different things in each.

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

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for record in self.layers:
            for name in record.inputs:
                if name not in seen:
                    raise UnsupportedFeatureError(
                        f"{self.source}: layer {record.name!r} reads {name!r}, which is not "
                        "an earlier layer of the model"
                    )
            if record.name in seen:
                raise UnsupportedFeatureError(f"{self.source}: two layers named {record.name!r}")
            seen.add(record.name)
        for name in (*self.inputs, *self.outputs):
            if name not in seen:
                raise UnsupportedFeatureError(f"{self.source}: no layer named {name!r}")

    def layer(self, name: str) -> LayerRecord:
        for record in self.layers:
            if record.name == name:
                return record
        raise KeyError(name)

    def masked(self, name: str) -> bool:
        """Whether the output of layer ``name`` carries a Keras mask."""
        return self._masks()[name]

    def _masks(self) -> dict[str, bool]:
        masks: dict[str, bool] = {}
        for record in self.layers:
            incoming = [masks[name] for name in record.inputs]
            rule = record.mask_rule
            if rule == "make":
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
        """The canonical stack, when the model is only recurrent layers in a chain.

        That is one float input, then recurrent layers and inference-time identities, one
        after another, no masks, and one output; None for anything else.
        """
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            return None
        chain = [record for record in self.layers if record.kind not in ("input", "identity")]
        if not chain or any(record.kind != "recurrent" for record in chain):
            return None
        previous = self.inputs[0]
        for record in self.layers[1:]:
            if record.inputs != (previous,):
                return None
            previous = record.name
        if previous != self.outputs[0]:
            return None
        if any(record.options["time_major"] for record in chain):
            return None
        if any(not record.options["return_sequences"] for record in chain[:-1]):
            return None
        layers = tuple(record.recurrent for record in chain if record.recurrent is not None)
        return RecurrentStack(layers, return_sequences=bool(chain[-1].options["return_sequences"]))


def mask_traps(graph: ModelGraph) -> list[tuple[str, str, bool]]:
    """Keras behaviours under a mask: ``(layer, what happens, whether the port refuses)``.

    Refused: a ``time_major`` layer reading a mask (the mask's axes no longer match), and
    ``unroll=True`` where Keras zeroes valid backward outputs under a mask (a Keras bug:
    the unrolled loop zeroes outputs in reversed order with the mask in input order), i.e.
    a ``Bidirectional`` returning sequences, or a ``go_backwards`` layer with
    ``zero_output_for_mask``.

    Example:
        >>> mask_traps(ModelGraph("m", (LayerRecord("x", "input", "InputLayer",
        ...     options={"shape": (None, 3), "dtype": "float32"}),), ("x",), ("x",)))
        []
    """
    traps = []
    for record in graph.layers:
        if record.kind != "recurrent" or not any(graph.masked(name) for name in record.inputs):
            continue
        layer = record.recurrent
        assert layer is not None
        where = f"layer {record.name!r} ({record.class_name})"
        if record.options["time_major"]:
            traps.append((record.name, f"{where}: time_major=True under a mask", True))
        buggy = layer.direction == "bidirectional" or (
            layer.direction == "backward" and layer.zero_masked_outputs
        )
        if record.options["unroll"] and record.options["return_sequences"] and buggy:
            traps.append(
                (
                    record.name,
                    f"{where}: unroll=True with a mask; Keras zeroes valid backward outputs "
                    "of this layer (a Keras bug) and no port reproduces that; rebuild it with "
                    "unroll=False, which computes the same without the bug",
                    True,
                )
            )
    return traps


__all__ = ["KINDS", "MASK_RULES", "LayerRecord", "ModelGraph", "mask_traps"]
