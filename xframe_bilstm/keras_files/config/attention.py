"""``Attention``, ``AdditiveAttention`` and ``MultiHeadAttention`` read into records.

Their calls say as much as their configurations: which tensors are the query, the value
and the key (``Attention([q, v, k])``, ``MultiHeadAttention(q, v, key=k)``; Keras 2 writes
the value and key of a ``MultiHeadAttention`` as references in the call's keyword
arguments), and ``use_causal_mask``. ``return_attention_scores=True`` (two outputs) and
explicit masks (``attention_mask``, ``query_mask``...) are refused by name; masks come from
the layers upstream, as Keras computes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import UnsupportedFeatureError
from ...graph import LayerRecord
from ..weights import WeightRef, expect_count
from .refs import Ref, is_keras2_ref, keras2_refs, tensor_refs

if TYPE_CHECKING:  # specs reads this module's classes
    from .specs import LayerSpec, ModelSpec

KIND_BY_CLASS = {
    "Attention": "attention",
    "AdditiveAttention": "attention",
    "MultiHeadAttention": "multi_head_attention",
}
# Call arguments that change nothing at inference.
_IGNORED = ("training", "mask")
_MHA_WEIGHTS = ("query", "key", "value", "output")


def attention_call(node: Any, name: str, class_name: str, source: str) -> tuple[list[Ref], dict]:
    """(query, value[, key] references, call options) of an attention layer's one call.

    ``node`` is the layer's inbound node as the configuration writes it (Keras 3's
    ``{"args", "kwargs"}``, Keras 2's list of ``[layer, node, tensor, kwargs]``).
    """
    where = f"{source}: layer {name!r} ({class_name})"
    if isinstance(node, Mapping):  # Keras 3
        args, kwargs = list(node.get("args", [])), dict(node.get("kwargs", {}))
        refs = [tensor_refs(arg) for arg in args]
        flat = [ref for group in refs for ref in group]
        named = {key: tensor_refs(kwargs.pop(key, None)) for key in ("value", "key")}
        for key in ("value", "key"):
            flat.extend(named[key])
    else:  # Keras 2: [[layer, node, tensor, kwargs], ...]
        items = [node] if is_keras2_ref(node) else list(node)
        flat = [(str(item[0]), int(item[1]), int(item[2])) for item in items]
        kwargs = {}
        for item in items:
            if len(item) > 3 and isinstance(item[3], Mapping):
                kwargs.update(item[3])
        for key in ("value", "key"):
            flat.extend(keras2_refs(kwargs.pop(key, None)))
    for key in _IGNORED:
        kwargs.pop(key, None)
    return _checked(flat, where), _call_options(kwargs, where)


def _checked(refs: list[Ref], where: str) -> list[Ref]:
    if not 2 <= len(refs) <= 3:
        raise UnsupportedFeatureError(
            f"{where} reads {len(refs)} tensors; an attention layer reads a query and a "
            "value, and optionally a key"
        )
    return refs


def _call_options(kwargs: Mapping[str, Any], where: str) -> dict[str, Any]:
    options = {"use_causal_mask": bool(kwargs.get("use_causal_mask", False))}
    if kwargs.get("return_attention_scores"):
        raise UnsupportedFeatureError(
            f"{where}: return_attention_scores=True returns two tensors (the output and the "
            "scores); a whole-model port supports layers that return one, so call it "
            "without return_attention_scores"
        )
    rest = sorted(
        key
        for key, value in kwargs.items()
        if key not in ("use_causal_mask", "return_attention_scores") and value is not None
    )
    if rest:
        raise UnsupportedFeatureError(
            f"{where} is called with {rest}; not supported: masks come from the layers "
            "upstream (Embedding(mask_zero=True), Masking) and use_causal_mask"
        )
    return options


def attention_record(layer: LayerSpec, refs: list[WeightRef], spec: ModelSpec) -> LayerRecord:
    """The record of an attention layer, its weights' shapes checked."""
    if layer.kind == "multi_head_attention":
        options, weights = _multi_head(layer, refs, spec)
    else:
        options, weights = _attention(layer, refs, spec)
    options["use_causal_mask"] = bool(
        layer.call.get("use_causal_mask", False) or layer.config.get("causal", False)
    )
    options["dropout"] = float(layer.config.get("dropout", 0.0) or 0.0)
    return LayerRecord(layer.name, layer.kind, layer.class_name, layer.inputs, options, weights)


def _attention(
    layer: LayerSpec, refs: list[WeightRef], spec: ModelSpec
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    where, config = spec.where(layer), layer.config
    if layer.class_name == "AdditiveAttention":
        score = "additive"
    else:
        score = str(config.get("score_mode", "dot"))
        if score not in ("dot", "concat"):
            raise UnsupportedFeatureError(f"{where}: score_mode={score!r}; dot or concat")
    use_scale = bool(config.get("use_scale", score == "additive"))
    names = (["scale"] if use_scale else []) + (
        ["concat_score_weight"] if score == "concat" else []
    )
    expect_count(refs, len(names), where)
    weights = {}
    for key, ref in zip(names, refs):
        shape = tuple(ref.shape) if key == "scale" and score == "additive" else ()
        if len(shape) > 1:
            raise UnsupportedFeatureError(f"{where}: scale has shape {shape}; expected (dim,)")
        weights[key] = np.asarray(ref.read(shape, f"{where} {key}"))
    return {"score": score}, weights


def _multi_head(
    layer: LayerSpec, refs: list[WeightRef], spec: ModelSpec
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    where, config = spec.where(layer), layer.config
    _refuse_options(config, where)
    heads, key_dim = int(config["num_heads"]), int(config["key_dim"])
    value_dim = int(config.get("value_dim") or key_dim)
    use_bias = bool(config.get("use_bias", True))
    expect_count(refs, 8 if use_bias else 4, where)
    per = 2 if use_bias else 1
    weights: dict[str, np.ndarray] = {}
    for index, name in enumerate(_MHA_WEIGHTS):
        kernel, *bias = refs[index * per : (index + 1) * per]
        if name == "output":
            shape: tuple[int, ...] = (heads, value_dim, kernel.shape[-1])
            bias_shape: tuple[int, ...] = (kernel.shape[-1],)
        else:
            dim = value_dim if name == "value" else key_dim
            shape, bias_shape = (kernel.shape[0], heads, dim), (heads, dim)
        weights[f"{name}_kernel"] = kernel.read(shape, f"{where} {name} kernel")
        if bias:
            weights[f"{name}_bias"] = bias[0].read(bias_shape, f"{where} {name} bias")
    output_shape = _output_shape(config.get("output_shape"), where)
    # Keras 3 runs a layer without dropout on its fused dot-product attention, which leaves
    # a fully masked row's even weights as Keras 2 does; with dropout, on a softmax that
    # zeroes every masked weight.
    dropout = float(config.get("dropout", 0.0) or 0.0)
    options = {
        "num_heads": heads,
        "key_dim": key_dim,
        "value_dim": value_dim,
        "output_shape": output_shape,
        "masked_rows": "zero" if spec.major >= 3 and dropout > 0 else "uniform",
    }
    return options, weights


def _refuse_options(config: Mapping[str, Any], where: str) -> None:
    axes = config.get("attention_axes")
    if axes is not None:
        axes = tuple(axes) if isinstance(axes, (list, tuple)) else (axes,)
        if axes not in ((1,), (-2,)):
            raise UnsupportedFeatureError(
                f"{where}: attention_axes={list(axes)}; attention over the time axis of "
                "(batch, time, features) inputs (attention_axes=None) is supported"
            )
    for key in ("query_shape", "value_shape", "key_shape"):
        shape = config.get(key)
        if isinstance(shape, (list, tuple)) and len(shape) != 3:
            raise UnsupportedFeatureError(
                f"{where}: {key}={list(shape)}; (batch, time, features) inputs are supported"
            )
    if config.get("use_gate"):
        raise UnsupportedFeatureError(f"{where}: use_gate=True is not supported")
    if config.get("sliding_window") is not None:
        raise UnsupportedFeatureError(
            f"{where}: sliding_window={config['sliding_window']} is not supported"
        )


def _output_shape(value: Any, where: str) -> int | None:
    if value is None or value == []:
        return None
    shape = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if len(shape) != 1:
        raise UnsupportedFeatureError(
            f"{where}: output_shape={list(shape)}; an output of one feature axis is supported"
        )
    return int(shape[0])


__all__ = ["KIND_BY_CLASS", "attention_call", "attention_record"]
