"""The package's own Keras layers (``xframe_bilstm>Reduce``, ``>Slice``, ``>ScalarOp``,
``>MatMul``, ``>Where``, ``>Divide``, ``>WeightOp``, ``>BatchBroadcast``, ``>Elementwise``,
``>Repeat``, ``>Expand``, ``>Gather``, ``>TimeFirst``, ``>MergedRows``, ``>LengthsMask``,
``>EndMask``, ``>ValidSteps``) read back into records of their kinds.

:func:`~xframe_bilstm.torch_to_keras` of a captured ``forward`` saves these layers
(:mod:`xframe_bilstm.adapters.keras.tensor_ops`, :mod:`xframe_bilstm.adapters.keras.packed`);
a saved model holding them ports back.
Only the exact pair of module and registered name this package writes is read: nothing is
imported, and a user's class of the same name is the user's (refused, or mapped to a
factory). Their options are checked as closely as a file from elsewhere needs: each value
of the type and range a capture writes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...errors import UnsupportedFeatureError
from ...graph import LayerRecord
from ...reference.tensor_ops import ELEMENTWISE
from ...reference.where import COMPARISONS
from ..weights import WeightRef, expect_count

if TYPE_CHECKING:  # specs reads this module's classes
    from .specs import LayerSpec, ModelSpec

_MODULE = "xframe_bilstm.adapters.keras.tensor_ops"
_CONV_MODULE = "xframe_bilstm.adapters.keras.convolution"
_PACKED_MODULE = "xframe_bilstm.adapters.keras.packed"
# registered name (the spec's class name) -> kind
KIND_BY_CLASS = {
    "xframe_bilstm>Reduce": "reduce",
    "xframe_bilstm>Slice": "slice",
    "xframe_bilstm>ScalarOp": "scalar_op",
    "xframe_bilstm>MatMul": "matmul",
    "xframe_bilstm>Where": "where",
    "xframe_bilstm>WeightOp": "weight_op",
    "xframe_bilstm>BatchBroadcast": "broadcast",
    "xframe_bilstm>Elementwise": "elementwise",
    "xframe_bilstm>TimeFirst": "time_first",
    "xframe_bilstm>MergedRows": "merged_rows",
    "xframe_bilstm>Repeat": "repeat",
    "xframe_bilstm>Expand": "expand",
    "xframe_bilstm>Gather": "gather",
    "xframe_bilstm>SliceTo": "slice_to",
    # Keras's convolutions, their bias added on axis 1 (read as Keras's, by ``convolution``)
    "xframe_bilstm>ChannelsFirstConv1D": "conv",
    "xframe_bilstm>ChannelsFirstConv2D": "conv",
    "xframe_bilstm>Conv1DTranspose": "conv_transpose",
    "xframe_bilstm>Conv2DTranspose": "conv_transpose",
    "xframe_bilstm>Divide": "merge",  # read with Keras's merges (``shape_layers``)
    "xframe_bilstm>LengthsMask": "lengths_mask",
    "xframe_bilstm>EndMask": "end_mask",
    "xframe_bilstm>ValidSteps": "valid_steps",
}
# registered name -> the module that defines it, as a saved configuration names it
_MODULE_BY_CLASS = {
    **dict.fromkeys(KIND_BY_CLASS, _MODULE),
    "xframe_bilstm>LengthsMask": _PACKED_MODULE,
    "xframe_bilstm>EndMask": _PACKED_MODULE,
    "xframe_bilstm>ValidSteps": _PACKED_MODULE,
    "xframe_bilstm>ChannelsFirstConv1D": _CONV_MODULE,
    "xframe_bilstm>ChannelsFirstConv2D": _CONV_MODULE,
    "xframe_bilstm>Conv1DTranspose": _CONV_MODULE,
    "xframe_bilstm>Conv2DTranspose": _CONV_MODULE,
}
# The number of tensors a layer reads, where a configuration could say otherwise.
_INPUT_COUNTS = {
    "lengths_mask": 2,
    "end_mask": 1,
    "valid_steps": 2,
    "broadcast": 1,
    "time_first": 1,
    "merged_rows": 1,
    "gather": 2,
    "slice_to": 2,
}
# The packed-sequence layers and TimeFirst have no options.
_NO_OPTIONS = ("lengths_mask", "end_mask", "valid_steps", "time_first")
# The layers holding one weight, ``value``, of their ``shape`` option.
_HOLDING = ("weight_op", "broadcast")
_REDUCTIONS = ("sum", "mean", "max", "min", "l1_norm", "l2_norm", "var", "std", "logsumexp")
_WEIGHT_OPS = ("add", "subtract", "multiply", "divide")
_SCALAR_OPS = (*_WEIGHT_OPS, "maximum", "minimum", "power")


def is_own_class(value: Mapping[str, Any]) -> bool:
    """Whether a configuration entry names one of these layers, as this package saves them.

    Example:
        >>> is_own_class({"module": _MODULE, "class_name": "Slice",
        ...               "registered_name": "xframe_bilstm>Slice"})
        True
        >>> is_own_class({"module": "mylib", "class_name": "Slice",
        ...               "registered_name": "xframe_bilstm>Slice"})
        False
    """
    registered, class_name = value.get("registered_name"), value.get("class_name")
    if registered not in KIND_BY_CLASS:
        return False
    if value.get("module") not in (_MODULE_BY_CLASS[str(registered)], None):
        return False
    return class_name in (registered, str(registered).split(">")[1])


def name_own_classes(config: Any) -> Any:
    """``config`` with each of these layers among the model's layers named by its registered
    name, so that it reads as its kind and never as a user's class of the same short name.

    Example:
        >>> entry = {"module": _MODULE, "class_name": "Reduce",
        ...          "registered_name": "xframe_bilstm>Reduce", "config": {"name": "total"}}
        >>> named = name_own_classes({"class_name": "Functional", "config": {"layers": [entry]}})
        >>> named["config"]["layers"][0]["class_name"]
        'xframe_bilstm>Reduce'
    """
    body = config.get("config") if isinstance(config, Mapping) else None
    if not isinstance(body, Mapping):
        return config
    layers = body.get("layers")
    if not isinstance(layers, list):
        return config
    named = [_named(entry) for entry in layers]
    return config if named == layers else {**config, "config": {**body, "layers": named}}


def _named(entry: Any) -> Any:
    """A layer's entry named by its registered name where it is one of these layers; a
    ``TimeDistributed``'s wrapped layer too."""
    if not isinstance(entry, Mapping):
        return entry
    if is_own_class(entry):
        return {**entry, "class_name": entry["registered_name"]}
    body = entry.get("config")
    if entry.get("class_name") != "TimeDistributed" or not isinstance(body, Mapping):
        return entry
    inner = body.get("layer")
    named = _named(inner)
    return entry if named is inner else {**entry, "config": {**body, "layer": named}}


def tensor_op_record(layer: LayerSpec, refs: list[WeightRef], spec: ModelSpec) -> LayerRecord:
    """The record of one of these layers, its options checked.

    Raises:
        UnsupportedFeatureError: an option missing or out of range, named.
    """
    where = spec.where(layer)
    kind = KIND_BY_CLASS[layer.class_name]
    expect_count(refs, 1 if kind in _HOLDING else 0, where)
    if kind in _INPUT_COUNTS and len(layer.inputs) != _INPUT_COUNTS[kind]:
        raise UnsupportedFeatureError(
            f"{where}: reads {len(layer.inputs)} tensors; expected {_INPUT_COUNTS[kind]}"
        )
    if kind in _NO_OPTIONS:
        return LayerRecord(layer.name, kind, layer.class_name, layer.inputs, {})
    given = layer.config.get("options")
    if not isinstance(given, Mapping):
        raise UnsupportedFeatureError(f"{where}: no 'options' in its configuration")
    readers = {
        "reduce": _reduce,
        "slice": _slice,
        "scalar_op": _scalar_op,
        "matmul": _matmul,
        "where": _where,
        "weight_op": _weight_op,
        "broadcast": _broadcast,
        "elementwise": lambda given, where: {
            "function": _choice(given, "function", tuple(ELEMENTWISE), where)
        },
        "repeat": _repeat,
        "expand": _expand,
        "gather": lambda given, where: {"axis": _axis(given.get("axis"), "axis", where)},
        "slice_to": lambda given, where: {"axis": _axis(given.get("axis"), "axis", where)},
        "merged_rows": lambda given, where: {"time_first": _flag(given, "time_first", where)},
    }
    reader = readers[kind]
    options = reader(given, where)
    if kind == "expand" and len(layer.inputs) != 1 + (None in options["sizes"]):
        raise UnsupportedFeatureError(  # a second input only for the sizes it gives
            f"{where}: reads {len(layer.inputs)} tensors; sizes {list(options['sizes'])}"
        )
    if kind not in _HOLDING:
        return LayerRecord(layer.name, kind, layer.class_name, layer.inputs, options)
    (ref,) = refs
    if tuple(ref.shape) != options["shape"]:
        raise _bad(where, "shape", list(options["shape"]), f"its weight's, {list(ref.shape)}")
    value = ref.read(tuple(ref.shape), f"{where} value")
    return LayerRecord(layer.name, kind, layer.class_name, layer.inputs, options, {"value": value})


def _reduce(given: Mapping[str, Any], where: str) -> dict[str, Any]:
    axes = given.get("axes")
    if not isinstance(axes, (list, tuple)) or not axes:
        raise _bad(where, "axes", axes)
    options = {
        "op": _choice(given, "op", _REDUCTIONS, where),
        "axes": tuple(_axis(axis, "axes", where) for axis in axes),
        "keepdims": _flag(given, "keepdims", where),
    }
    if options["op"] in ("var", "std"):  # the count less this divides the squares' sum
        correction = _integer(given.get("correction"), "correction", where)
        if correction < 0:
            raise _bad(where, "correction", correction, "0 or more")
        options["correction"] = correction
    return options


def _slice(given: Mapping[str, Any], where: str) -> dict[str, Any]:
    step = _integer(given.get("step"), "step", where)
    stop = given.get("stop")
    reverses = step == -1 and given.get("start") == -1 and stop is None  # the whole axis
    if step < 1 and not reverses:
        raise _bad(where, "step", step)
    return {
        "axis": _axis(given.get("axis"), "axis", where),
        "start": _integer(given.get("start"), "start", where),
        "stop": None if stop is None else _integer(stop, "stop", where),
        "step": step,
        "keep_axis": _flag(given, "keep_axis", where),
    }


def _repeat(given: Mapping[str, Any], where: str) -> dict[str, Any]:
    repeats = _integer(given.get("repeats"), "repeats", where)
    if repeats < 1:
        raise _bad(where, "repeats", repeats)
    return {"axis": _axis(given.get("axis"), "axis", where), "repeats": repeats}


def _broadcast(given: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A held value's shape, and the input's axis whose size cuts its rows, where given."""
    options: dict[str, Any] = {"shape": _shape(given, where)}
    if given.get("steps_of") is not None:
        options["steps_of"] = _axis(given.get("steps_of"), "steps_of", where)
    return options


def _expand(given: Mapping[str, Any], where: str) -> dict[str, Any]:
    sizes = given.get("sizes")
    if not isinstance(sizes, (list, tuple)) or not all(map(_expand_size, sizes)):
        raise _bad(where, "sizes", sizes, "a list of sizes, each -1, None or at least 1")
    return {"sizes": tuple(sizes)}


def _expand_size(size: Any) -> bool:
    if size is None:
        return True
    return isinstance(size, int) and not isinstance(size, bool) and (size == -1 or size > 0)


def _scalar_op(given: Mapping[str, Any], where: str) -> dict[str, Any]:
    constant = given.get("constant")
    if isinstance(constant, bool) or not isinstance(constant, (int, float)):
        raise _bad(where, "constant", constant)
    if not math.isfinite(float(constant)):
        raise _bad(where, "constant", constant)
    return {
        "op": _choice(given, "op", _SCALAR_OPS, where),
        "constant": float(constant),
        "reverse": _flag(given, "reverse", where),
    }


def _weight_op(given: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {
        "op": _choice(given, "op", _WEIGHT_OPS, where),
        "reverse": _flag(given, "reverse", where),
        "shape": _shape(given, where),
    }


def _shape(given: Mapping[str, Any], where: str) -> tuple[int, ...]:
    """The shape of a held weight: sizes of at least 1 (none for a scalar)."""
    shape = given.get("shape")
    if not isinstance(shape, (list, tuple)) or not all(
        isinstance(size, int) and not isinstance(size, bool) and size > 0 for size in shape
    ):
        raise _bad(where, "shape", shape, "a list of sizes of at least 1")
    return tuple(shape)


def _matmul(given: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {key: _flag(given, key, where) for key in ("transpose_a", "transpose_b")}


def _where(given: Mapping[str, Any], where: str) -> dict[str, Any]:
    numbers: dict[str, float] = {}
    for key in ("fill", "otherwise"):  # otherwise: a mask as numbers
        value = given.get(key)
        if key == "otherwise" and key not in given:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise _bad(where, key, value, "a number or an infinity")
        numbers[key] = float(value)
    if "condition" in given:  # several comparisons combined (reference.where's terms)
        return {**numbers, "condition": _term(given["condition"], where)}
    return {**_comparison(given, where), **numbers}


def _term(given: Any, where: str) -> dict[str, Any]:
    """A term of a combined condition: a comparison of input ``input``, or and/or of terms."""
    if not isinstance(given, Mapping):
        raise _bad(where, "condition", given, "comparisons combined with and/or")
    if "op" in given:
        op, parts = given.get("op"), given.get("args")
        if op not in ("and", "or") or not isinstance(parts, (list, tuple)) or len(parts) < 2:
            raise _bad(where, "condition", dict(given), "'and' or 'or' of two terms or more")
        return {"op": op, "args": [_term(part, where) for part in parts]}
    index = _integer(given.get("input"), "input", where)
    if index < 1:
        raise _bad(where, "input", index, "a source input, counted from 1")
    return {**_comparison(given, where), "input": index}


def _comparison(given: Mapping[str, Any], where: str) -> dict[str, Any]:
    value, axes = given.get("value"), given.get("axes")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(where, "value", value, "a number")
    if not math.isfinite(float(value)):
        raise _bad(where, "value", value, "a finite number")
    if not isinstance(axes, (list, tuple)):
        raise _bad(where, "axes", axes, "a list of axes")
    return {
        "compare": _choice(given, "compare", tuple(COMPARISONS), where),
        "value": float(value),
        "axes": tuple(_axis(axis, "axes", where) for axis in axes),
    }


def _choice(given: Mapping[str, Any], key: str, allowed: tuple[str, ...], where: str) -> str:
    value = given.get(key)
    if value not in allowed:
        raise _bad(where, key, value, f"one of {', '.join(allowed)}")
    return str(value)


def _flag(given: Mapping[str, Any], key: str, where: str) -> bool:
    value = given.get(key)
    if not isinstance(value, bool):
        raise _bad(where, key, value, "True or False")
    return value


def _integer(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(where, key, value, "an integer")
    return value


def _axis(value: Any, key: str, where: str) -> int:
    """An axis counted with the batch axis, which no operation here may touch."""
    axis = _integer(value, key, where)
    if axis == 0:
        raise _bad(where, key, value, "an axis other than the batch axis 0")
    return axis


def _bad(where: str, key: str, value: Any, expected: str = "") -> UnsupportedFeatureError:
    wanted = f"; expected {expected}" if expected else ""
    return UnsupportedFeatureError(
        f"{where}: option {key!r} is {value!r}{wanted}; re-save the model with "
        "torch_to_keras of the module"
    )


__all__ = ["KIND_BY_CLASS", "is_own_class", "name_own_classes", "tensor_op_record"]
