"""Attention records rebuilt as Keras 3 ``Attention``, ``AdditiveAttention`` and
``MultiHeadAttention`` layers, called as the original was and given its weights."""

from __future__ import annotations

from typing import Any

from ...graph import LayerRecord

KINDS = ("attention", "multi_head_attention")


def attention_layer(record: LayerRecord, keras: Any, dtype: str) -> Any:
    """The Keras layer of an attention record, not yet built."""
    layers, options = keras.layers, record.options
    common = {"dropout": float(options["dropout"]), "dtype": dtype, "name": record.name}
    if record.kind == "multi_head_attention":
        return layers.MultiHeadAttention(
            int(options["num_heads"]),
            int(options["key_dim"]),
            value_dim=int(options["value_dim"]),
            use_bias="query_bias" in record.weights,
            output_shape=options["output_shape"],
            **common,
        )
    use_scale = "scale" in record.weights
    if options["score"] == "additive":
        return layers.AdditiveAttention(use_scale=use_scale, **common)
    return layers.Attention(use_scale=use_scale, score_mode=str(options["score"]), **common)


def call_attention(record: LayerRecord, layer: Any, inputs: list[Any]) -> Any:
    """Call ``layer`` on the record's (query, value[, key]) as the original was called."""
    causal = bool(record.options["use_causal_mask"])
    if record.kind == "multi_head_attention":
        key = inputs[2] if len(inputs) > 2 else None
        return layer(inputs[0], inputs[1], key=key, use_causal_mask=causal)
    return layer(list(inputs), use_causal_mask=causal)


def set_attention_weights(record: LayerRecord, layer: Any) -> None:
    """Give a built attention layer the record's weights, in the order Keras keeps them."""
    if record.kind == "multi_head_attention":
        order = [
            f"{name}_{part}"
            for name in ("query", "key", "value", "output")
            for part in ("kernel", "bias")
        ]
    else:
        order = ["scale", "concat_score_weight"]
    layer.set_weights([record.weights[key] for key in order if key in record.weights])


__all__ = ["KINDS", "attention_layer", "call_attention", "set_attention_weights"]
