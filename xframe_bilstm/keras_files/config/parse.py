"""Model configurations (Sequential and functional) into specs, unsupported layers refused.

Nothing in a configuration is imported or run: a class named with a module outside Keras
(or a registered custom name) is refused wherever it appears.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from ...custom import custom_factory, custom_hint
from ...errors import UnsupportedFeatureError
from ...graph import MULTI_INPUT_KINDS
from .functional import parse_functional
from .nested import ParseNested, inline_call, is_nested, nested_model
from .specs import (
    SUPPORTED_CLASSES,
    LayerSpec,
    ModelSpec,
    NestedModel,
    input_spec,
    kind_of,
    layer_name,
    sub_config,
)
from .tensor_ops import is_own_class, name_own_classes

# tf_keras writes its own classes that Keras's public API does not export under the module
# that defines them. These are read as Keras 2 by name, and never imported from here.
_TF_KERAS_OWN = {
    "tf_keras.src.engine.functional": ("Functional",),
    "tf_keras.src.engine.sequential": ("Sequential",),
    "tf_keras.src.engine.training": ("Model",),
    "tf_keras.src.layers.core.tf_op_layer": ("TFOpLambda", "SlicingOpLambda"),
}
# What json.loads makes besides dicts and lists: nothing in them names a module.
_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})
# tf_keras layers that apply a TensorFlow operation (their config's ``function``) to tensors.
_TF_OPERATIONS = ("TFOpLambda", "SlicingOpLambda")


def parse_layers(
    config: Mapping[str, Any], *, major: int, source: str, strict: bool = True
) -> ModelSpec:
    """Read a model configuration (``{"class_name": ..., "config": ...}``) into specs.

    With ``strict=False`` unsupported layers are kept (with an empty ``kind``) instead of
    refused, so that they can be listed.

    Raises:
        UnsupportedFeatureError: naming every layer whose class cannot be ported, or the
            model class when it is neither Sequential nor functional.

    Example:
        >>> spec = parse_layers({"class_name": "Sequential", "config": {"name": "s",
        ...     "layers": [{"class_name": "InputLayer", "config": {"name": "x",
        ...                 "batch_shape": [None, 4], "dtype": "int32"}},
        ...                {"class_name": "Dropout", "config": {"name": "d", "rate": 0.5}}]}},
        ...     major=3, source="m.keras")
        >>> [(layer.name, layer.kind, layer.inputs) for layer in spec.layers]
        [('x', 'input', ()), ('d', 'identity', ('x',))]
    """
    if not isinstance(config, Mapping) or "config" not in config:
        raise UnsupportedFeatureError(f"{source}: the model configuration has no 'config'")
    _refuse_foreign_modules(config, source, major=major)
    config = name_own_classes(config)  # the package's own layers, read by registered name
    class_name = config.get("class_name")
    body = config["config"]
    nested = partial(parse_layers, major=major, source=source, strict=False)
    if class_name == "Sequential":
        spec = _parse_sequential(body, major=major, source=source, parse_nested=nested)
    elif class_name in ("Functional", "Model") or (
        isinstance(body, Mapping) and "input_layers" in body
    ):
        spec = parse_functional(body, major=major, source=source, parse_nested=nested)
    else:
        raise UnsupportedFeatureError(
            f"{source}: the model is a {class_name}; only Sequential and functional models "
            "(with their configuration saved) can be ported"
        )
    if strict:
        _refuse_unsupported(spec.layers, source)
    return spec


def _is_tf_keras_own(value: Mapping[str, Any], major: int) -> bool:
    """Whether ``value`` names one of tf_keras's own classes, in a file tf_keras wrote."""
    module, class_name = value.get("module"), value.get("class_name")
    registered = value.get("registered_name")
    return (
        major < 3
        and class_name in _TF_KERAS_OWN.get(str(module), ())
        and registered in (None, class_name)
    )


def _refuse_foreign_modules(config: Mapping[str, Any], source: str, *, major: int = 3) -> None:
    """Refuse a configuration that names code outside Keras anywhere in it.

    Keras 3 imports the ``module`` an object names, and looks up ``package>Name``
    registered names among custom objects. Our reader never does either, but a file
    accepted here may later be loaded by Keras itself (a whole model's Keras run): a
    built-in class name with another module would import that module there. A file
    written by tf_keras (``major`` 2) may also name tf_keras's own classes in their
    defining modules (``tf_keras.src.engine.functional.Functional``); exactly those
    pairs of module and class are accepted, matched by name.

    Example:
        >>> _refuse_foreign_modules({"class_name": "LSTM", "module": "os", "config": {}}, "m")
        Traceback (most recent call last):
        ...
        xframe_bilstm.errors.UnsupportedFeatureError: m: refused: ... module 'os' ...
    """
    found: list[str] = []
    layers: list[str] = []  # class names of the layers among them: the user's own classes
    pending: list[Any] = [config]
    while pending:  # a loop, not recursion: the nesting depth is the file's to choose
        value = pending.pop()
        if type(value) in _JSON_SCALARS:  # most entries; skips the Mapping check's cost
            continue
        if isinstance(value, Mapping):
            module, registered = value.get("module"), value.get("registered_name")
            foreign = isinstance(module, str) and module.split(".")[0] != "keras"
            custom = isinstance(registered, str) and ">" in registered
            if _user_class(value, foreign):
                # The user's own class: ported by the user's factory when mapped, refused
                # with every other unsupported layer (and how to map it) when not.
                foreign = custom = False
            own = _is_tf_keras_own(value, major) or is_own_class(value)
            if (foreign or custom) and not own:
                class_name, inner = value.get("class_name"), value.get("config")
                name = inner.get("name") if isinstance(inner, Mapping) else None
                found.append(
                    f"{class_name!r} names module {module!r} (registered name {registered!r}"
                    + (f", layer {name!r})" if isinstance(name, str) else ")")
                )
                if isinstance(name, str) and isinstance(class_name, str):
                    layers.append(class_name.split(">")[-1])
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    if found:
        raise UnsupportedFeatureError(
            f"{source}: refused: {'; '.join(found)}; only Keras's own classes are read, and "
            "nothing is imported from a file" + (f"; {custom_hint(layers)}" if layers else "")
        )


def _user_class(value: Mapping[str, Any], foreign: bool) -> bool:
    """Whether ``value`` names a class the user maps to a factory, or a registered class
    of the user's (``package>Name``, no module) that is refused by name with the others."""
    class_name, registered = value.get("class_name"), value.get("registered_name")
    config = value.get("config")
    if not isinstance(class_name, str) or not isinstance(config, Mapping) or "name" not in config:
        return False  # not a layer
    if custom_factory(class_name, registered if isinstance(registered, str) else None):
        return True
    return not foreign and class_name.split(">")[-1] not in SUPPORTED_CLASSES


def _describe_unsupported(layer: LayerSpec) -> str:
    """``'name' (Class)``, with the TensorFlow operation of a tf_keras op layer."""
    described = f"{layer.name!r} ({layer.class_name})"
    function = layer.config.get("function") if layer.class_name in _TF_OPERATIONS else None
    if isinstance(function, str):
        described += f" applying TensorFlow's tf.{function}"
    return described


def _refuse_unsupported(layers: Sequence[LayerSpec], source: str) -> None:
    unsupported = [_describe_unsupported(layer) for layer in layers if not layer.kind]
    for layer in layers:
        if layer.class_name == "TimeDistributed":
            inner = sub_config(layer.config, "layer", layer, source)[0]
            if kind_of(inner) in ("", "input", *MULTI_INPUT_KINDS):
                unsupported.append(f"{layer.name!r} (TimeDistributed({inner}))")
    if unsupported:
        own = [
            layer.class_name.split(">")[-1]
            for layer in layers
            if not layer.kind and layer.class_name not in (*_TF_OPERATIONS, "Lambda")
        ]
        hint = f"; {custom_hint(own)}" if own else ""
        if any(layer.class_name in _TF_OPERATIONS for layer in layers):
            hint += (
                "; TFOpLambda and SlicingOpLambda layers are TensorFlow operations applied to "
                "Keras tensors (tf.math.reduce_sum(x), x * 2.0, x[:, -1] in a tf_keras model), "
                "which a port cannot read: rebuild those steps with the supported layers, or "
                "port the recurrent layers on their own (keras_to_torch(model.get_layer(name))) "
                "and apply the operations in torch"
            )
        raise UnsupportedFeatureError(
            f"{source}: cannot port layer {', '.join(unsupported)}; supported layer classes: "
            f"{', '.join(SUPPORTED_CLASSES)} (TimeDistributed of those reading one tensor){hint}"
        )


def _parse_sequential(
    body: Mapping[str, Any], *, major: int, source: str, parse_nested: ParseNested
) -> ModelSpec:
    entries = list(body.get("layers", []))
    if not entries:
        raise UnsupportedFeatureError(f"{source}: the Sequential model has no layers")
    layers: list[LayerSpec] = []
    first = entries[0]
    if first.get("class_name") == "InputLayer":
        config = first["config"]
        shape = config.get("batch_shape", config.get("batch_input_shape"))
        layers.append(input_spec(layer_name(first), shape, config.get("dtype"), 0))
        entries = entries[1:]
    else:
        # Keras 2 puts the input shape on the first layer.
        config = first.get("config", {})
        shape = config.get("batch_input_shape", config.get("batch_shape"))
        if shape is None:
            shape = body.get("build_input_shape")
        dtype = "int32" if first.get("class_name") == "Embedding" else config.get("dtype")
        layers.append(input_spec("input", shape, dtype, 0))
    nested: list[NestedModel] = []
    previous = layers[0].name
    for position, entry in enumerate(entries, start=1):
        if is_nested(entry):  # a model used as a layer: its layers, inline
            nested.append(nested_model(entry, position, parse_nested))
            made, outputs = inline_call(entry, nested[-1].spec, 0, [previous], source)
            layers.extend(made)
            previous = outputs[0]
            continue
        class_name = str(entry.get("class_name"))
        layers.append(
            LayerSpec(
                layer_name(entry),
                class_name,
                kind_of(class_name),
                entry.get("config", {}),
                (previous,),
                position,
            )
        )
        previous = layers[-1].name
    return ModelSpec(
        str(body.get("name", "sequential")),
        tuple(layers),
        (layers[0].name,),
        (previous,),
        major,
        source,
        sequential=True,
        nested=tuple(nested),
    )
