"""Models used as layers (a functional or Sequential model called inside another, as a
siamese model calls its encoder on each input): read as their own layers, inline.

Each call of a nested model is a call of each of its layers: the first call's specs are
named ``<model>.<layer>``, a later call's ``<model>@k.<layer>`` sharing the first's
(:func:`~.specs.call_name`), and every spec keeps the ``path`` of nested models that
holds its weights, where each file format and a live model keep them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from ...errors import UnsupportedFeatureError
from ...graph import tensor_layer
from .specs import LayerSpec, ModelSpec, NestedModel, call_name, layer_name

NESTED_CLASSES = ("Functional", "Model", "Sequential")

ParseNested = Callable[[Mapping[str, Any]], ModelSpec]


def is_nested(entry: Mapping[str, Any]) -> bool:
    """Whether a layer entry is a model used as a layer (holding its own layers).

    Example:
        >>> is_nested({"class_name": "Sequential", "config": {"name": "s", "layers": []}})
        True
    """
    config = entry.get("config")
    return (
        entry.get("class_name") in NESTED_CLASSES
        and isinstance(config, Mapping)
        and "layers" in config
    )


def first_node(entry: Mapping[str, Any], major: int) -> int:
    """The node index a configuration gives a nested model's first call: tf_keras counts
    the model's own build (on its ``InputLayer``) as node 0 and writes its calls from 1;
    Keras 3 from 0."""
    layers = entry["config"].get("layers") or [{}]
    return int(major < 3 and layers[0].get("class_name") == "InputLayer")


def inline_call(
    entry: Mapping[str, Any],
    inner: ModelSpec,
    call: int,
    inputs: Sequence[str],
    source: str,
    holder: int = 0,
) -> tuple[list[LayerSpec], tuple[str, ...]]:
    """The specs of call ``call`` of the nested model ``entry`` (parsed as ``inner``) on the
    tensors ``inputs``, and the tensors its outputs are; the layers of call ``holder`` (the
    first one the model reads) hold the weights, the others share them.

    Raises:
        UnsupportedFeatureError: the call reads another number of tensors than the model
            takes.
    """
    model = layer_name(entry)
    if len(inputs) != len(inner.inputs):
        raise UnsupportedFeatureError(
            f"{source}: call {call} of model {model!r} reads {len(inputs)} tensors; it takes "
            f"{len(inner.inputs)}"
        )
    outer = dict(zip(inner.inputs, inputs))

    def renamed(layer: str, index: int) -> str:  # unique: the layer's own calls are in it
        return f"{call_name(model, index)}.{layer}"

    def tensor(name: str) -> str:
        if name in outer:
            return outer[name]
        layer = tensor_layer(name)
        return renamed(layer, call) + name[len(layer) :]  # ":1" of an output 1 stays

    specs = []
    for layer in inner.layers:
        if layer.kind == "input":
            continue
        name, held = renamed(layer.name, call), renamed(layer.shares or layer.name, holder)
        specs.append(
            replace(
                layer,
                name=name,
                inputs=tuple(tensor(read) for read in layer.inputs),
                shares="" if held == name else held,
                path=(model, *(layer.path or (layer.name,))),
            )
        )
    return specs, tuple(tensor(name) for name in inner.outputs)


def nested_model(entry: Mapping[str, Any], position: int, parse: ParseNested) -> NestedModel:
    """A nested model's entry parsed: its name, class, position and spec."""
    return NestedModel(layer_name(entry), str(entry["class_name"]), position, parse(entry))


__all__ = ["NESTED_CLASSES", "first_node", "inline_call", "is_nested", "nested_model"]
