"""Keras model configurations (Keras 2 and 3, Sequential and functional) into layer records.

Rules of this module:

- Two steps: :func:`parse_layers` reads the configuration alone into :class:`LayerSpec`
  objects (class, options, wiring) and refuses every unsupported layer, naming each with
  its class, before any weight is read; :func:`build_graph` then reads each layer's
  weights through a callback, checks their shapes against the configuration, and makes
  the :class:`~xframe_bilstm.graph.ModelGraph`.
- Recurrent layers become canonical :class:`~xframe_bilstm.canonical.RecurrentLayer`
  objects; Keras 2 names and layouts are read as Keras 2 meant them
  (:mod:`~xframe_bilstm.keras_files.legacy`).
- Keras 3 functional configurations record how masks were computed as extra operation
  nodes (``NotEqual``, ``Any``...) passed as ``mask=`` arguments. Masks are recomputed
  from the layers here, as Keras does when it builds the model, so nodes that the outputs
  are not computed from are dropped; an operation that computes a model tensor is
  refused like any other unsupported layer.
- Options that change inference and that the port cannot reproduce raise
  :class:`~xframe_bilstm.errors.UnsupportedFeatureError` naming the layer and the option.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..canonical import DirectionWeights, RecurrentLayer
from ..errors import UnsupportedFeatureError, WeightShapeError
from ..graph import LayerRecord, ModelGraph
from .legacy import activation_name, cudnn_direction, recurrent_activation
from .weights import WeightRef

_KIND_BY_CLASS = {
    "InputLayer": "input",
    "Embedding": "embedding",
    "Masking": "masking",
    "Dropout": "identity",
    "SpatialDropout1D": "identity",
    "GaussianNoise": "identity",
    "GaussianDropout": "identity",
    "AlphaDropout": "identity",
    "ActivityRegularization": "identity",
    "LSTM": "recurrent",
    "GRU": "recurrent",
    "SimpleRNN": "recurrent",
    "CuDNNLSTM": "recurrent",
    "CuDNNGRU": "recurrent",
    "Bidirectional": "recurrent",
    "Dense": "dense",
    "TimeDistributed": "dense",
    "Activation": "activation",
    "Flatten": "flatten",
    "Reshape": "reshape",
    "GlobalMaxPooling1D": "global_pool",
    "GlobalMaxPool1D": "global_pool",
    "GlobalAveragePooling1D": "global_pool",
    "GlobalAvgPool1D": "global_pool",
    "Concatenate": "concatenate",
}
SUPPORTED_CLASSES = tuple(sorted(_KIND_BY_CLASS))
_CELLS = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "simple_rnn", "CuDNNLSTM": "lstm"}
_CELLS["CuDNNGRU"] = "gru"
_GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}

# tf_keras writes its own classes that Keras's public API does not export under the module
# that defines them. These are read as Keras 2 by name, and never imported from here.
_TF_KERAS_OWN = {
    "tf_keras.src.engine.functional": ("Functional",),
    "tf_keras.src.engine.sequential": ("Sequential",),
    "tf_keras.src.engine.training": ("Model",),
    "tf_keras.src.layers.core.tf_op_layer": ("TFOpLambda", "SlicingOpLambda"),
}
# tf_keras layers that apply a TensorFlow operation (their config's ``function``) to tensors.
_TF_OPERATIONS = ("TFOpLambda", "SlicingOpLambda")


@dataclass(frozen=True)
class LayerSpec:
    """One layer as its configuration describes it, before its weights are read.

    ``position`` counts the model's layers (operation nodes excluded) in configuration
    order; ``.keras`` files name weight groups by it.
    """

    name: str
    class_name: str
    kind: str
    config: Mapping[str, Any]
    inputs: tuple[str, ...] = ()
    position: int = 0


@dataclass(frozen=True)
class ModelSpec:
    """A parsed configuration: the model's name, layers, inputs and outputs."""

    name: str
    layers: tuple[LayerSpec, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    major: int
    source: str
    dropped: tuple[str, ...] = field(default=())  # mask-bookkeeping operation nodes


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
    class_name = config.get("class_name")
    body = config["config"]
    if class_name == "Sequential":
        spec = _parse_sequential(body, major=major, source=source)
    elif class_name in ("Functional", "Model") or (
        isinstance(body, Mapping) and "input_layers" in body
    ):
        spec = _parse_functional(body, major=major, source=source)
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
    pending: list[Any] = [config]
    while pending:  # a loop, not recursion: the nesting depth is the file's to choose
        value = pending.pop()
        if isinstance(value, Mapping):
            module, registered = value.get("module"), value.get("registered_name")
            foreign = isinstance(module, str) and module.split(".")[0] != "keras"
            custom = isinstance(registered, str) and ">" in registered
            if (foreign or custom) and not _is_tf_keras_own(value, major):
                raise UnsupportedFeatureError(
                    f"{source}: refused: {value.get('class_name')!r} names module "
                    f"{module!r} (registered name {registered!r}); only Keras's own classes "
                    "are read, and nothing is imported from a file"
                )
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)


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
            inner = _sub_config(layer.config, "layer", layer, source)[0]
            if inner != "Dense":
                unsupported.append(f"{layer.name!r} (TimeDistributed({inner}))")
    if unsupported:
        hint = ""
        if any(layer.class_name in _TF_OPERATIONS for layer in layers):
            hint = (
                "; TFOpLambda and SlicingOpLambda layers are TensorFlow operations applied to "
                "Keras tensors (tf.math.reduce_sum(x), x * 2.0, x[:, -1] in a tf_keras model), "
                "which a port cannot read: rebuild those steps with the supported layers, or "
                "port the recurrent layers on their own (keras_to_torch(model.get_layer(name))) "
                "and apply the operations in torch"
            )
        raise UnsupportedFeatureError(
            f"{source}: cannot port layer {', '.join(unsupported)}; supported layer classes: "
            f"{', '.join(SUPPORTED_CLASSES)} (TimeDistributed of Dense only){hint}"
        )


def _layer_name(entry: Mapping[str, Any]) -> str:
    name = entry.get("name") or entry.get("config", {}).get("name")
    if not isinstance(name, str) or not name:
        raise UnsupportedFeatureError(f"a layer configuration has no name: {entry!r:.200}")
    return name


def _input_spec(name: str, batch_shape: Any, dtype: Any, position: int) -> LayerSpec:
    shape = tuple(batch_shape[1:]) if isinstance(batch_shape, (list, tuple)) else (None,)
    return LayerSpec(
        name,
        "InputLayer",
        "input",
        {"shape": shape, "dtype": dtype if isinstance(dtype, str) else "float32"},
        position=position,
    )


def _parse_sequential(body: Mapping[str, Any], *, major: int, source: str) -> ModelSpec:
    entries = list(body.get("layers", []))
    if not entries:
        raise UnsupportedFeatureError(f"{source}: the Sequential model has no layers")
    layers: list[LayerSpec] = []
    first = entries[0]
    if first.get("class_name") == "InputLayer":
        config = first["config"]
        shape = config.get("batch_shape", config.get("batch_input_shape"))
        layers.append(_input_spec(_layer_name(first), shape, config.get("dtype"), 0))
        entries = entries[1:]
    else:
        # Keras 2 puts the input shape on the first layer.
        config = first.get("config", {})
        shape = config.get("batch_input_shape", config.get("batch_shape"))
        if shape is None:
            shape = body.get("build_input_shape")
        dtype = "int32" if first.get("class_name") == "Embedding" else config.get("dtype")
        layers.append(_input_spec("input", shape, dtype, 0))
    for position, entry in enumerate(entries, start=1):
        class_name = str(entry.get("class_name"))
        layers.append(
            LayerSpec(
                _layer_name(entry),
                class_name,
                _KIND_BY_CLASS.get(class_name, ""),
                entry.get("config", {}),
                (layers[-1].name,),
                position,
            )
        )
    return ModelSpec(
        str(body.get("name", "sequential")),
        tuple(layers),
        (layers[0].name,),
        (layers[-1].name,),
        major,
        source,
    )


def _tensor_refs(value: Any) -> list[tuple[str, int, int]]:
    """Every ``(layer, node_index, tensor_index)`` a Keras 3 argument refers to."""
    if isinstance(value, Mapping):
        if value.get("class_name") == "__keras_tensor__":
            history = value["config"]["keras_history"]
            return [(str(history[0]), int(history[1]), int(history[2]))]
        return [ref for item in value.values() for ref in _tensor_refs(item)]
    if isinstance(value, (list, tuple)):
        return [ref for item in value for ref in _tensor_refs(item)]
    return []


def _node_inputs(
    entry: Mapping[str, Any], name: str, source: str
) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    """(inputs, mask references) of a layer's single call."""
    nodes = entry.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise UnsupportedFeatureError(
            f"{source}: layer {name!r} is called {len(nodes)} times (a shared layer); each "
            "layer must be called once"
        )
    if not nodes:
        return [], []
    node = nodes[0]
    if isinstance(node, Mapping):  # Keras 3: {"args": [...], "kwargs": {...}}
        args, kwargs = list(node.get("args", [])), dict(node.get("kwargs", {}))
        masks = _tensor_refs(kwargs.pop("mask", None))
        kwargs.pop("training", None)
        extra = _tensor_refs(kwargs) + _tensor_refs(args[1:])
        if extra and entry.get("class_name") in _KIND_BY_CLASS:
            raise UnsupportedFeatureError(
                f"{source}: layer {name!r} takes tensors other than its input "
                f"({sorted({ref[0] for ref in extra})}, e.g. initial_state); not supported"
            )
        return _tensor_refs(args[:1]) + extra, masks
    if _keras2_ref(node):
        # tf_keras's TFOpLambda writes its one call flat: [layer, node, tensor, kwargs].
        node = [node]
    inputs = []
    supported = entry.get("class_name") in _KIND_BY_CLASS
    for item in node:  # Keras 2: [[layer, node_index, tensor_index, kwargs], ...]
        if not _keras2_ref(item):
            raise UnsupportedFeatureError(
                f"{source}: layer {name!r} ({entry.get('class_name')}) has an inbound node "
                f"this reader does not know: {item!r:.200}"
            )
        layer, node_index, tensor_index = str(item[0]), int(item[1]), int(item[2])
        kwargs = dict(item[3]) if len(item) > 3 and isinstance(item[3], Mapping) else {}
        kwargs.pop("mask", None)
        kwargs.pop("training", None)
        if kwargs and supported:
            raise UnsupportedFeatureError(
                f"{source}: layer {name!r} is called with {sorted(kwargs)}; not supported"
            )
        inputs.append((layer, node_index, tensor_index))
        # A TensorFlow operation's other tensor arguments (x * y) are refs in its kwargs.
        inputs.extend(_keras2_refs(kwargs))
    return inputs, []


def _keras2_ref(value: Any) -> bool:
    """Whether ``value`` is a Keras 2 tensor reference ``[layer, node, tensor, ...]``."""
    return (
        isinstance(value, (list, tuple))
        and len(value) >= 3
        and isinstance(value[0], str)
        and all(isinstance(index, int) and not isinstance(index, bool) for index in value[1:3])
    )


def _keras2_refs(value: Any) -> list[tuple[str, int, int]]:
    """Every Keras 2 tensor reference nested in a call's keyword arguments."""
    if _keras2_ref(value):
        return [(str(value[0]), int(value[1]), int(value[2]))]
    if isinstance(value, Mapping):
        return [ref for item in value.values() for ref in _keras2_refs(item)]
    if isinstance(value, (list, tuple)):
        return [ref for item in value for ref in _keras2_refs(item)]
    return []


def _check_single(
    ref: tuple[str, int, int], classes: Mapping[str, str], reader: str, source: str
) -> None:
    layer, node_index, tensor_index = ref
    if classes.get(layer) not in _KIND_BY_CLASS:
        # A layer we do not port is refused by its class, which is what the user can act
        # on; a nested model's call numbers count its own internal calls too.
        return
    if node_index:
        raise UnsupportedFeatureError(
            f"{source}: {reader} reads call {node_index} of layer {layer!r} "
            f"({classes.get(layer)}); each layer must be called once"
        )
    if tensor_index:
        raise UnsupportedFeatureError(
            f"{source}: {reader} reads output {tensor_index} of layer {layer!r} "
            f"({classes.get(layer)}), which returns several tensors (return_state=True or "
            "merge_mode=None); a whole-model port supports layers that return one"
        )


def _endpoint_names(
    value: Any, what: str, classes: Mapping[str, str], source: str
) -> tuple[str, ...]:
    items = value if value and isinstance(value[0], (list, tuple)) else [value]
    names = []
    for item in items:
        _check_single((str(item[0]), int(item[1]), int(item[2])), classes, f"model {what}", source)
        names.append(str(item[0]))
    return tuple(names)


def _parse_functional(body: Mapping[str, Any], *, major: int, source: str) -> ModelSpec:
    entries = list(body.get("layers", []))
    wiring: dict[str, list[tuple[str, int, int]]] = {}
    classes = {_layer_name(entry): str(entry.get("class_name")) for entry in entries}
    for entry in entries:
        name = _layer_name(entry)
        wiring[name] = _node_inputs(entry, name, source)[0]
    outputs = _endpoint_names(body.get("output_layers", []), "output", classes, source)
    # The model's tensors are what its outputs are computed from; everything else only
    # computed masks (Keras 3 records those as operation nodes) and is dropped.
    needed: set[str] = set()
    pending = list(outputs)
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        if name not in wiring:
            raise UnsupportedFeatureError(f"{source}: the model reads an unknown layer {name!r}")
        needed.add(name)
        pending.extend(ref[0] for ref in wiring[name])
    operations = {name for name in wiring if name not in needed}
    layers: list[LayerSpec] = []
    position = 0
    for entry in entries:
        name = _layer_name(entry)
        if name in operations:
            continue
        class_name = str(entry.get("class_name"))
        config = entry.get("config", {})
        if class_name == "InputLayer":
            shape = config.get("batch_shape", config.get("batch_input_shape"))
            layers.append(_input_spec(name, shape, config.get("dtype"), position))
        else:
            for ref in wiring[name]:
                _check_single(ref, classes, f"layer {name!r}", source)
            layers.append(
                LayerSpec(
                    name,
                    class_name,
                    _KIND_BY_CLASS.get(class_name, ""),
                    config,
                    tuple(ref[0] for ref in wiring[name]),
                    position,
                )
            )
        position += 1
    return ModelSpec(
        str(body.get("name", "model")),
        tuple(_dependency_order(layers, source)),
        _endpoint_names(body.get("input_layers", []), "input", classes, source),
        outputs,
        major,
        source,
        tuple(sorted(operations)),
    )


def _dependency_order(layers: list[LayerSpec], source: str) -> list[LayerSpec]:
    done: set[str] = set()
    ordered: list[LayerSpec] = []
    pending = list(layers)
    while pending:
        ready = [layer for layer in pending if all(name in done for name in layer.inputs)]
        if not ready:
            names = sorted(layer.name for layer in pending)
            raise UnsupportedFeatureError(f"{source}: layers {names} read unknown layers")
        for layer in ready:
            ordered.append(layer)
            done.add(layer.name)
        pending = [layer for layer in pending if layer.name not in done]
    return ordered


# --------------------------------------------------------------------------- weights


WeightReader = Callable[[LayerSpec], list[WeightRef]]


def build_graph(spec: ModelSpec, read_weights: WeightReader) -> ModelGraph:
    """Read every layer's weights (shapes checked first) and make the model graph."""
    records = [_record(layer, read_weights, spec) for layer in spec.layers]
    return ModelGraph(
        spec.name,
        tuple(records),
        spec.inputs,
        spec.outputs,
        keras_major=spec.major,
        source=spec.source,
    )


def _where(layer: LayerSpec, spec: ModelSpec) -> str:
    return f"{spec.source}: layer {layer.name!r} ({layer.class_name})"


def _record(layer: LayerSpec, read_weights: WeightReader, spec: ModelSpec) -> LayerRecord:
    where = _where(layer, spec)
    config = layer.config
    kind = layer.kind
    refs = [] if kind in ("input",) else read_weights(layer)
    if kind in ("input", "masking", "identity", "activation", "flatten", "reshape"):
        _expect_count(refs, 0, where)
    options: dict[str, Any]
    weights: dict[str, np.ndarray] = {}
    if kind == "input":
        options = dict(config)
    elif kind == "embedding":
        _expect_count(refs, 1, where)
        shape = (int(config["input_dim"]), int(config["output_dim"]))
        weights["embeddings"] = refs[0].read(shape, f"{where} embeddings")
        options = {"mask_zero": bool(config.get("mask_zero", False))}
    elif kind == "masking":
        options = {"mask_value": float(config.get("mask_value", 0.0))}
    elif kind == "identity":
        options = {}
    elif kind == "activation":
        options = {
            "activation": activation_name(config.get("activation"), major=spec.major, where=where)
        }
    elif kind == "flatten":
        _check_channels_last(config, where)
        options = {}
    elif kind == "reshape":
        options = {"target_shape": tuple(int(size) for size in config["target_shape"])}
    elif kind == "global_pool":
        _check_channels_last(config, where)
        options = {
            "op": "max" if "Max" in layer.class_name else "average",
            "keepdims": bool(config.get("keepdims", False)),
        }
    elif kind == "concatenate":
        options = {
            "axis": int(config.get("axis", -1)),
            # Keras 2 keeps a step when every input's mask keeps it; Keras 3 when any does.
            "mask_combine": "all" if spec.major < 3 else "any",
        }
    elif kind == "dense":
        return _dense(layer, refs, spec)
    else:
        return _recurrent(layer, refs, spec)
    return LayerRecord(layer.name, kind, layer.class_name, layer.inputs, options, weights)


def _expect_count(refs: Sequence[WeightRef], count: int, where: str) -> None:
    if len(refs) != count:
        raise WeightShapeError(f"{where}: expected {count} weights, found {len(refs)}")


def _check_channels_last(config: Mapping[str, Any], where: str) -> None:
    if config.get("data_format", "channels_last") not in (None, "channels_last"):
        raise UnsupportedFeatureError(
            f"{where}: data_format={config['data_format']!r}; only channels_last is supported"
        )


def _sub_config(
    config: Mapping[str, Any], key: str, layer: LayerSpec, source: str
) -> tuple[str, Mapping[str, Any]]:
    inner = config.get(key)
    if not isinstance(inner, Mapping) or "class_name" not in inner:
        raise UnsupportedFeatureError(
            f"{source}: layer {layer.name!r} ({layer.class_name}) has no {key!r} configuration"
        )
    return str(inner["class_name"]), inner.get("config", {})


def _dense(layer: LayerSpec, refs: list[WeightRef], spec: ModelSpec) -> LayerRecord:
    where = _where(layer, spec)
    config = layer.config
    time_distributed = layer.class_name == "TimeDistributed"
    if time_distributed:
        config = _sub_config(config, "layer", layer, spec.source)[1]
    units = int(config["units"])
    use_bias = bool(config.get("use_bias", True))
    _expect_count(refs, 2 if use_bias else 1, where)
    if len(refs[0].shape) != 2:
        raise WeightShapeError(f"{where}: kernel has shape {refs[0].shape}; expected 2-D")
    weights = {"kernel": refs[0].read((refs[0].shape[0], units), f"{where} kernel")}
    if use_bias:
        weights["bias"] = refs[1].read((units,), f"{where} bias")
    options = {
        "activation": activation_name(config.get("activation"), major=spec.major, where=where),
        "time_distributed": time_distributed,
    }
    return LayerRecord(layer.name, "dense", layer.class_name, layer.inputs, options, weights)


def _cell_options(class_name: str, config: Mapping[str, Any], where: str, major: int) -> dict:
    """Everything a canonical layer holds once for both directions, from one layer config."""
    if class_name not in _CELLS:
        raise UnsupportedFeatureError(f"{where}: wraps a {class_name}; expected LSTM, GRU or RNN")
    cell = _CELLS[class_name]
    cudnn = class_name.startswith("CuDNN")
    activation: str
    gate: str | None
    reset_after: bool | None
    if cudnn:  # fixed activations, biases, and for GRU the reset-after form
        activation, gate, reset_after, use_bias = "tanh", "sigmoid", cell == "gru", True
    else:
        activation = recurrent_activation(
            config.get("activation", "tanh"), major=major, where=where
        )
        gate = (
            None
            if cell == "simple_rnn"
            else recurrent_activation(
                config.get("recurrent_activation", "sigmoid"), major=major, where=where
            )
        )
        # A GRU config without reset_after predates the option: reset before the product.
        reset_after = bool(config.get("reset_after", False)) if cell == "gru" else None
        use_bias = bool(config.get("use_bias", True))
    return {
        "cell": cell,
        "units": int(config["units"]),
        "activation": activation,
        "recurrent_activation": gate,
        "reset_after": reset_after if cell == "gru" else None,
        "use_bias": use_bias,
        "cudnn": cudnn,
    }


def _flags(config: Mapping[str, Any], where: str) -> dict[str, bool]:
    flags = {
        key: bool(config.get(key, False))
        for key in (
            "return_sequences",
            "return_state",
            "go_backwards",
            "stateful",
            "unroll",
            "time_major",
            "zero_output_for_mask",
        )
    }
    if flags["return_state"]:
        raise UnsupportedFeatureError(
            f"{where}: return_state=True; a whole-model port supports layers that return one "
            "tensor (port the layer on its own with keras_to_torch to get its states)"
        )
    if flags["stateful"]:
        raise UnsupportedFeatureError(
            f"{where}: stateful=True carries states between calls; a whole-model port is "
            "stateless (port the recurrent layers on their own with keras_to_torch)"
        )
    return flags


def _direction(
    refs: Sequence[WeightRef], options: Mapping[str, Any], where: str
) -> DirectionWeights:
    cell, units = options["cell"], options["units"]
    width = _GATES[cell] * units
    expected = 3 if options["use_bias"] else 2
    _expect_count(refs, expected, where)
    if len(refs[0].shape) != 2 or refs[0].shape[0] < 1:
        raise WeightShapeError(f"{where}: kernel has shape {refs[0].shape}; expected 2-D")
    input_size = refs[0].shape[0]
    kernel = refs[0].read((input_size, width), f"{where} kernel")
    recurrent = refs[1].read((units, width), f"{where} recurrent_kernel")
    if options["cudnn"]:
        doubled = refs[2].read((2 * width,), f"{where} bias (cuDNN layout)")
        return cudnn_direction(kernel, recurrent, doubled, gates=_GATES[cell])
    bias: np.ndarray | None = None
    if options["use_bias"]:
        shape = (2, width) if cell == "gru" and options["reset_after"] else (width,)
        bias = refs[2].read(shape, f"{where} bias")
    return DirectionWeights(kernel, recurrent, bias)


def _recurrent(layer: LayerSpec, refs: list[WeightRef], spec: ModelSpec) -> LayerRecord:
    where = _where(layer, spec)
    config = layer.config
    if layer.class_name != "Bidirectional":
        options = _cell_options(layer.class_name, config, where, spec.major)
        flags = _flags(config, where)
        canonical = RecurrentLayer(
            cell=options["cell"],
            input_size=refs[0].shape[0] if refs else 1,
            units=options["units"],
            weights=(_direction(refs, options, where),),
            direction="backward" if flags["go_backwards"] else "forward",
            activation=options["activation"],
            recurrent_activation=options["recurrent_activation"],
            reset_after=options["reset_after"],
            zero_masked_outputs=flags["zero_output_for_mask"],
        )
        return _recurrent_record(layer, canonical, flags, options)

    forward_class, forward_config = _sub_config(config, "layer", layer, spec.source)
    if isinstance(config.get("backward_layer"), Mapping):
        backward_class, backward_config = _sub_config(config, "backward_layer", layer, spec.source)
    else:
        # Keras 2 stores only the wrapped layer and flips its go_backwards for the other half.
        backward_class = forward_class
        backward_config = {**forward_config, "go_backwards": not forward_config.get("go_backwards")}
    forward_flags = _flags(forward_config, where)
    backward_flags = _flags(backward_config, where)
    if forward_flags["go_backwards"] or not backward_flags["go_backwards"]:
        raise UnsupportedFeatureError(
            f"{where}: its forward layer has go_backwards=True (Keras 2 then swaps the two "
            "directions); rebuild it with a forward layer"
        )
    forward = _cell_options(forward_class, forward_config, where, spec.major)
    backward = _cell_options(backward_class, backward_config, where, spec.major)
    for key in forward:
        if forward[key] != backward[key]:
            raise UnsupportedFeatureError(
                f"{where}: its halves differ in {key} ({forward[key]!r} and {backward[key]!r})"
            )
    for key in ("return_sequences", "time_major", "unroll"):
        if forward_flags[key] != backward_flags[key]:
            raise UnsupportedFeatureError(f"{where}: its halves differ in {key}")
    merge_mode = config.get("merge_mode", "concat")
    if merge_mode is None:
        raise UnsupportedFeatureError(
            f"{where}: merge_mode=None returns two tensors; a whole-model port supports "
            "layers that return one"
        )
    if len(refs) % 2:
        raise WeightShapeError(f"{where}: {len(refs)} weights cannot split into two halves")
    half = len(refs) // 2
    canonical = RecurrentLayer(
        cell=forward["cell"],
        input_size=refs[0].shape[0] if refs else 1,
        units=forward["units"],
        weights=(
            _direction(refs[:half], forward, f"{where} forward"),
            _direction(refs[half:], backward, f"{where} backward"),
        ),
        direction="bidirectional",
        merge_mode=merge_mode,
        activation=forward["activation"],
        recurrent_activation=forward["recurrent_activation"],
        reset_after=forward["reset_after"],
    )
    return _recurrent_record(layer, canonical, forward_flags, forward)


def _recurrent_record(
    layer: LayerSpec,
    canonical: RecurrentLayer,
    flags: Mapping[str, bool],
    options: Mapping[str, Any],
) -> LayerRecord:
    record_options = {
        "return_sequences": flags["return_sequences"],
        "time_major": flags["time_major"],
        "unroll": flags["unroll"],
        "cudnn": options["cudnn"],
    }
    return LayerRecord(
        layer.name,
        "recurrent",
        layer.class_name,
        layer.inputs,
        record_options,
        recurrent=canonical,
    )


__all__ = ["SUPPORTED_CLASSES", "LayerSpec", "ModelSpec", "build_graph", "parse_layers"]
