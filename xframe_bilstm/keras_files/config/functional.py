"""The wiring of functional models: which layer reads which, and in what order they run.

Keras 3 records each call as ``{"args": [...], "kwargs": {...}}`` with tensors as
``__keras_tensor__`` references; Keras 2 as ``[layer, node_index, tensor_index, kwargs]``
lists. Masks are recomputed from the layers, as Keras does when it builds the model, so
nodes that the outputs are not computed from (Keras 3's mask operations) are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ...errors import UnsupportedFeatureError
from ...graph import ATTENTION_KINDS, tensor_layer, tensor_name
from .attention import attention_call
from .nested import ParseNested, first_node, inline_call, is_nested, nested_model
from .refs import Ref, is_keras2_ref, keras2_refs, tensor_refs
from .specs import LayerSpec, ModelSpec, NestedModel, call_name, input_spec, kind_of, layer_name


def _ref_tensor(ref: Ref) -> str:
    """The graph's name of the tensor ``ref`` reads."""
    return tensor_name(call_name(ref[0], ref[1]), ref[2])


def _ported_ref(ref: Ref, ported: frozenset[str]) -> Ref:
    """``ref``, reading call 0 of a layer that is not ``ported``: it is refused by its
    class, which is what the user can act on."""
    return ref if ref[0] in ported else (ref[0], 0, ref[2])


def _calls(entry: Mapping[str, Any]) -> list[Any]:
    """The inbound nodes of a layer's entry, one per call (none for an input)."""
    return list(entry.get("inbound_nodes") or [])


def _node_inputs(
    entry: Mapping[str, Any], node: Any, name: str, source: str
) -> tuple[list[Ref], list[Ref]]:
    """(inputs, mask references) of one call of a layer."""
    class_name = str(entry.get("class_name"))
    if kind_of(class_name) in ATTENTION_KINDS:  # query, value and key, in that order
        return attention_call(node, name, class_name, source)[0], []
    if isinstance(node, Mapping):  # Keras 3: {"args": [...], "kwargs": {...}}
        args, kwargs = list(node.get("args", [])), dict(node.get("kwargs", {}))
        masks = tensor_refs(kwargs.pop("mask", None))
        kwargs.pop("training", None)
        if kind_of(str(entry.get("class_name"))) == "recurrent":
            # RNN.call(sequences, initial_state=None): the states follow the sequence.
            states = tensor_refs(kwargs.pop("initial_state", None)) + tensor_refs(args[1:])
            return tensor_refs(args[:1]) + states + tensor_refs(kwargs), masks
        extra = tensor_refs(kwargs) + tensor_refs(args[1:])
        if extra and kind_of(str(entry.get("class_name"))):
            raise UnsupportedFeatureError(
                f"{source}: layer {name!r} takes tensors other than its input "
                f"({sorted({ref[0] for ref in extra})}, e.g. initial_state); not supported"
            )
        return tensor_refs(args[:1]) + extra, masks
    if is_keras2_ref(node):
        # tf_keras's TFOpLambda writes its one call flat: [layer, node, tensor, kwargs].
        node = [node]
    inputs = []
    supported = bool(kind_of(str(entry.get("class_name"))))
    for item in node:  # Keras 2: [[layer, node_index, tensor_index, kwargs], ...]
        if not is_keras2_ref(item):
            raise UnsupportedFeatureError(
                f"{source}: layer {name!r} ({entry.get('class_name')}) has an inbound node "
                f"this reader does not know: {item!r:.200}"
            )
        layer, node_index, tensor_index = str(item[0]), int(item[1]), int(item[2])
        kwargs = dict(item[3]) if len(item) > 3 and isinstance(item[3], Mapping) else {}
        kwargs.pop("mask", None)
        kwargs.pop("training", None)
        kwargs.pop("initial_state", None)  # tf_keras lists the states as the node's tensors
        if kwargs and supported:
            raise UnsupportedFeatureError(
                f"{source}: layer {name!r} is called with {sorted(kwargs)}; not supported"
            )
        inputs.append((layer, node_index, tensor_index))
        # A TensorFlow operation's other tensor arguments (x * y) are refs in its kwargs.
        inputs.extend(keras2_refs(kwargs))
    return inputs, []


def _states_without_mask(entry: Mapping[str, Any], node: Any, inputs: list[Ref]) -> bool:
    """Whether a Keras 3 recurrent layer's call reads initial states and no ``mask=``:
    Keras 3 hands a layer its input's mask only when the call reads one tensor, so this
    call runs over every step, masked or not (Keras 2 passes the mask on)."""
    return (
        kind_of(str(entry.get("class_name"))) == "recurrent"
        and len(inputs) > 1
        and isinstance(node, Mapping)
        and node.get("kwargs", {}).get("mask") is None
    )


def _returns_states(entry: Mapping[str, Any]) -> bool:
    """Whether a recurrent layer's entry has ``return_state=True`` (and one merged output)."""
    config = entry.get("config", {})
    if entry.get("class_name") == "Bidirectional":
        if config.get("merge_mode", "concat") is None:
            return False  # two outputs before the states: refused as several tensors
        config = config.get("layer", {}).get("config", {})
    return bool(config.get("return_state"))


def _check_single(
    ref: Ref,
    classes: Mapping[str, str],
    reader: str,
    source: str,
    stateful: frozenset[str] = frozenset(),
) -> None:
    layer, _, tensor_index = ref
    if not kind_of(str(classes.get(layer))):
        # A layer we do not port is refused by its class, which is what the user can act
        # on; a nested model's outputs are its layers'.
        return
    if tensor_index and layer not in stateful:
        raise UnsupportedFeatureError(
            f"{source}: {reader} reads output {tensor_index} of layer {layer!r} "
            f"({classes.get(layer)}), which returns several tensors (merge_mode=None or "
            "return_state=True on a layer that cannot return states); a whole-model port "
            "reads the states of LSTM, GRU, SimpleRNN and Bidirectional(merge_mode set) only"
        )


def _endpoint_names(
    value: Any,
    what: str,
    classes: Mapping[str, str],
    source: str,
    stateful: frozenset[str],
    ported: frozenset[str],
) -> tuple[str, ...]:
    names = []
    for ref in _endpoint_refs(value):
        _check_single(ref, classes, f"model {what}", source, stateful)
        names.append(_ref_tensor(_ported_ref(ref, ported)))
    return tuple(names)


def _endpoint_refs(value: Any) -> list[Ref]:
    items = value if value and isinstance(value[0], (list, tuple)) else [value]
    return [(str(item[0]), int(item[1]), int(item[2])) for item in items]


def parse_functional(
    body: Mapping[str, Any], *, major: int, source: str, parse_nested: ParseNested
) -> ModelSpec:
    """The spec of a functional model's configuration: one layer spec per call of each
    layer; a layer called on several inputs (shared) is one spec per call, the later ones
    named :func:`~.specs.call_name` and sharing the first's layer (``shares``); a model used
    as a layer is read inline, by ``parse_nested`` (:mod:`.nested`)."""
    entries = list(body.get("layers", []))
    wiring: dict[str, list[Ref]] = {}  # by call name
    classes = {layer_name(entry): str(entry.get("class_name")) for entry in entries}
    ported = frozenset(  # a nested model through its layers
        name for name, class_name in classes.items() if kind_of(class_name)
    ) | {layer_name(entry) for entry in entries if is_nested(entry)}
    stateful = frozenset(
        layer_name(entry)
        for entry in entries
        if kind_of(str(entry.get("class_name"))) == "recurrent" and _returns_states(entry)
    )
    first = {layer_name(e): first_node(e, major) if is_nested(e) else 0 for e in entries}
    for entry in entries:
        name = layer_name(entry)
        wiring[name] = []
        for index, node in enumerate(_calls(entry), start=first[name]):
            refs = _node_inputs(entry, node, name, source)[0]
            wiring[call_name(name, index)] = [_ported_ref(ref, ported) for ref in refs]
    # The model's tensors are what its outputs are computed from; everything else only
    # computed masks (Keras 3 records those as operation nodes) and is dropped.
    needed: set[str] = set()
    ends = [_ported_ref(ref, ported) for ref in _endpoint_refs(body.get("output_layers", []))]
    pending = [call_name(layer, index) for layer, index, _ in ends]
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        if name not in wiring:
            raise UnsupportedFeatureError(f"{source}: the model reads an unknown layer {name!r}")
        needed.add(name)
        pending.extend(call_name(ref[0], ref[1]) for ref in wiring[name])
    layers: list[LayerSpec] = []
    nested: list[NestedModel] = []
    aliases: dict[str, str] = {}  # a nested model's outputs: the tensors of its layers
    position = 0
    for entry in entries:
        name = layer_name(entry)
        class_name = str(entry.get("class_name"))
        config = entry.get("config", {})
        if class_name == "InputLayer":
            if name in needed:
                shape = config.get("batch_shape", config.get("batch_input_shape"))
                layers.append(input_spec(name, shape, config.get("dtype"), position))
                position += 1
            continue
        calls = enumerate(_calls(entry), start=first[name])
        kept = [(index, node) for index, node in calls if call_name(name, index) in needed]
        if kept and is_nested(entry):
            nested.append(nested_model(entry, position, parse_nested))
        for index, node in kept:  # none for a mask operation
            called, inputs = call_name(name, index), wiring[call_name(name, index)]
            for ref in inputs:
                _check_single(ref, classes, f"layer {called!r}", source, stateful)
            tensors = [_ref_tensor(ref) for ref in inputs]
            # The first call read holds the weights; the later ones share its layer.
            holder = kept[0][0]
            if is_nested(entry):
                inner, start = nested[-1].spec, first[name]
                made, outputs = inline_call(
                    entry, inner, index - start, tensors, source, holder - start
                )
                layers.extend(made)
                aliases.update((tensor_name(called, i), t) for i, t in enumerate(outputs))
                continue
            layers.append(
                LayerSpec(
                    called,
                    class_name,
                    kind_of(class_name),
                    config,
                    tuple(tensors),
                    position,
                    _call_changes(entry, node, class_name, inputs, name, source),
                    shares="" if index == holder else call_name(name, holder),
                    path=(name,) if called != name else (),  # its weights: the layer's
                )
            )
        position += bool(kept)
    layers = [replace(layer, inputs=_aliased(layer.inputs, aliases)) for layer in layers]
    known = (classes, source, stateful, ported)
    model_inputs = _endpoint_names(body.get("input_layers", []), "input", *known)
    outputs = _endpoint_names(body.get("output_layers", []), "output", *known)
    return ModelSpec(
        str(body.get("name", "model")),
        tuple(_dependency_order(layers, source)),
        model_inputs,
        _aliased(outputs, aliases),
        major,
        source,
        nested=tuple(nested),
    )


def _aliased(names: tuple[str, ...], aliases: Mapping[str, str]) -> tuple[str, ...]:
    """``names`` with each nested model's output replaced by the tensor it is (itself
    maybe another nested model's output)."""
    found = []
    for name in names:
        while name in aliases:
            name = aliases[name]
        found.append(name)
    return tuple(found)


def _call_changes(
    entry: Mapping[str, Any], node: Any, class_name: str, inputs: list[Ref], name: str, source: str
) -> dict[str, Any]:
    """What one call of a layer passes that changes what it computes (see
    :class:`~.specs.LayerSpec`)."""
    if kind_of(class_name) in ATTENTION_KINDS:
        return attention_call(node, name, class_name, source)[1]
    if _states_without_mask(entry, node, inputs):
        return {"unmasked": True}
    return {}


def _dependency_order(layers: list[LayerSpec], source: str) -> list[LayerSpec]:
    done: set[str] = set()
    ordered: list[LayerSpec] = []
    pending = list(layers)
    while pending:
        ready = [
            layer for layer in pending if all(tensor_layer(name) in done for name in layer.inputs)
        ]
        if not ready:
            names = sorted(layer.name for layer in pending)
            raise UnsupportedFeatureError(f"{source}: layers {names} read unknown layers")
        for layer in ready:
            ordered.append(layer)
            done.add(layer.name)
        pending = [layer for layer in pending if layer.name not in done]
    return ordered
