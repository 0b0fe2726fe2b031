"""Build a plain PyTorch module from a :class:`~xframe_bilstm.graph.ModelGraph`.

Rules of this module:

- One submodule per Keras layer that computes something
  (:func:`~xframe_bilstm.models.torch_layers.layer_module`), named after the layer
  (``model.embedding``, ``model.bidirectional``, ``model.dense``), so the ``state_dict``
  reads like the Keras model: ``embedding.weight``, ``bidirectional.rnn.weight_ih_l0``,
  ``dense.weight``. A layer called on several inputs (shared) is one submodule, called
  for each. Weights are copied exactly (Keras kernels transposed for
  ``nn.Linear``; recurrent layers as in :func:`~xframe_bilstm.keras_to_torch`).
- ``forward`` takes the model's inputs in the model's order (token ids as int64) and
  returns its output, or a tuple of its outputs (final states of a ``return_state`` layer
  among them, as the Keras model returns them). Masks are computed as Keras computes them
  and passed to the layers that use them; nothing in ``forward`` depends on the data's
  values for control flow, so ``torch.export`` can trace the module.
- Keras behaviour that a port cannot reproduce raises
  :class:`~xframe_bilstm.errors.UnsupportedFeatureError` before anything is built.
"""

from __future__ import annotations

import keyword
import re
from typing import NamedTuple

import torch
from torch import nn

from ..errors import UnsupportedFeatureError, WeightShapeError
from ..graph import MASK_RULES, MULTI_INPUT_KINDS, ModelGraph
from ..mask_traps import mask_traps
from .graph_structure import graph_structure, release_weights
from .torch_layers import Activation, Concatenate, Dense, Embedding, Masking, Reshape, layer_module
from .torch_normpool import GlobalPool


class _Step(NamedTuple):
    name: str
    attribute: str
    kind: str
    inputs: tuple[str, ...]
    return_sequences: bool
    outputs: tuple[str, ...]  # the tensors it makes: its output, then any final states


def _attribute_name(name: str, taken: set[str]) -> str:
    base = re.sub(r"\W", "_", name) or "layer"
    if base[0].isdigit() or keyword.iskeyword(base) or hasattr(nn.Module, base):
        base = f"layer_{base}"
    candidate, index = base, 1
    while candidate in taken:
        candidate, index = f"{base}_{index}", index + 1
    taken.add(candidate)
    return candidate


class KerasModel(nn.Module):
    """A whole Keras model as a plain PyTorch module.

    Submodules are the Keras layers, in the model's order, named after them;
    ``input_names`` and ``output_names`` are the Keras model's. ``forward(*inputs)`` takes
    one tensor per model input and returns one tensor per model output (a tuple when there
    are several). ``keras_graph`` is the graph the module was built from, without its
    weights (the parameters hold them): :func:`~xframe_bilstm.torch_to_keras` and
    ``compare()`` read the module back through it, with the weights it holds then.

    Example:
        >>> import numpy as np
        >>> from xframe_bilstm.graph import LayerRecord, ModelGraph
        >>> graph = ModelGraph("tiny", (
        ...     LayerRecord("ids", "input", "InputLayer", options={"shape": (None,),
        ...                                                        "dtype": "int32"}),
        ...     LayerRecord("embedding", "embedding", "Embedding", ("ids",),
        ...                 {"mask_zero": True}, {"embeddings": np.eye(3, dtype="float32")}),
        ...     LayerRecord("pool", "global_pool", "GlobalAveragePooling1D", ("embedding",),
        ...                 {"op": "average", "keepdims": False})),
        ...     inputs=("ids",), outputs=("pool",))
        >>> model = build_torch(graph)
        >>> model(torch.tensor([[1, 2, 0]])).tolist()   # the padded step is left out
        [[0.0, 0.5, 0.5]]
    """

    def __init__(self, graph: ModelGraph, *, hand_over: bool = False) -> None:
        super().__init__()
        self.name = graph.name
        self.input_names = tuple(graph.inputs)
        self.output_names = tuple(graph.outputs)
        self.keras_graph = graph_structure(graph)
        # The module's own attributes are not free for a layer named like one of them.
        taken = {"name", "input_names", "output_names", "keras_graph"}
        steps: list[_Step] = []
        for record in graph.layers:
            if record.kind == "input":
                continue
            if record.shares:  # a shared layer: its one module, called again
                attribute = next(s.attribute for s in steps if s.name == record.shares)
            else:
                attribute = _attribute_name(record.name, taken)
                module = layer_module(record, graph, KerasModel)
                if module is not None:
                    self.add_module(attribute, module)
            if hand_over:
                release_weights(record)
            steps.append(
                _Step(
                    record.name,
                    attribute,
                    record.kind,
                    tuple(record.inputs),
                    bool(record.options.get("return_sequences", False)),
                    record.outputs,
                )
            )
        self._steps = tuple(steps)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.input_names):
            raise WeightShapeError(
                f"{self.name}: expected {len(self.input_names)} inputs "
                f"({', '.join(self.input_names)}), got {len(inputs)}"
            )
        values: dict[str, torch.Tensor] = dict(zip(self.input_names, inputs))
        masks: dict[str, torch.Tensor | None] = dict.fromkeys(self.input_names)
        for step in self._steps:
            module = getattr(self, step.attribute)
            x = values[step.inputs[0]]
            mask = masks[step.inputs[0]]
            if step.kind in MULTI_INPUT_KINDS:
                tensors = [values[name] for name in step.inputs]
                in_masks = [masks[name] for name in step.inputs]
                values[step.name] = module(*tensors, masks=in_masks)
                masks[step.name] = module.combine_masks(tensors, in_masks)
                continue
            if step.kind == "recurrent" and len(step.outputs) > 1:
                states = [values[name] for name in step.inputs[1:]]
                outputs = module(x, mask, *states)
                values.update(zip(step.outputs, outputs))
                masks.update(dict.fromkeys(step.outputs[1:]))
            elif step.kind == "recurrent":
                values[step.name] = module(x, mask, *[values[n] for n in step.inputs[1:]])
            elif step.kind == "global_pool":
                values[step.name] = module(x, mask)
            else:
                values[step.name] = module(x)
            if step.kind == "embedding":
                masks[step.name] = (x != 0) if module.mask_zero else None
            elif step.kind == "masking":
                masks[step.name] = module.compute_mask(x)
            elif MASK_RULES[step.kind] == "keep" or (
                step.kind == "recurrent" and step.return_sequences
            ):
                masks[step.name] = mask
            else:
                masks[step.name] = None
        outputs = tuple(values[name] for name in self.output_names)
        return outputs[0] if len(outputs) == 1 else outputs


def build_torch(graph: ModelGraph) -> KerasModel:
    """The :class:`KerasModel` of ``graph``, after refusing what it cannot reproduce.

    Raises:
        UnsupportedFeatureError: a Keras behaviour under a mask that no port reproduces
            (see :func:`~xframe_bilstm.mask_traps.mask_traps`).
    """
    refuse_mask_traps(graph)
    return KerasModel(graph)


def refuse_mask_traps(graph: ModelGraph) -> None:
    """Raise :class:`~xframe_bilstm.errors.UnsupportedFeatureError` for a Keras behaviour
    under a mask that no port reproduces."""
    refusals = [message for _, message, refused in mask_traps(graph) if refused]
    if refusals:
        raise UnsupportedFeatureError(f"{graph.source}: " + "; ".join(refusals))


def build_torch_taking(graph: ModelGraph) -> KerasModel:
    """:func:`build_torch` of a graph that is the caller's to give away (read from a file
    for this port): each layer's arrays leave the graph as its module takes them."""
    refuse_mask_traps(graph)
    return KerasModel(graph, hand_over=True)


__all__ = [
    "Activation",
    "Concatenate",
    "Dense",
    "Embedding",
    "GlobalPool",
    "KerasModel",
    "Masking",
    "Reshape",
    "build_torch",
    "build_torch_taking",
    "refuse_mask_traps",
]
