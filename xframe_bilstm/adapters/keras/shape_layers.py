"""Merges, permutes, repeats, ``TimeDistributed`` and activation layers rebuilt in Keras 3."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...errors import UnsupportedFeatureError
from ...graph import LayerRecord
from .activations import keras_activation
from .tensor_ops import tensor_op_classes

_MERGES = {
    "add": "Add",
    "subtract": "Subtract",
    "multiply": "Multiply",
    "average": "Average",
    "maximum": "Maximum",
    "minimum": "Minimum",
}
LayerBuilder = Callable[[LayerRecord, Any, str, dict[str, Any], int], Any]


def keras_shape_layer(
    record: LayerRecord,
    keras: Any,
    dtype: str,
    kernel: dict[str, Any],
    rank: int,
    build: LayerBuilder,
) -> Any:
    """The Keras layer of a record whose kind is in :data:`~xframe_bilstm.graph.SHAPE_KINDS`
    reading a rank-``rank`` tensor.

    ``build`` builds the layer a ``TimeDistributed`` wraps (any kind), on one rank fewer.
    """
    layers, options, name, kind = keras.layers, record.options, record.name, record.kind
    common = {"dtype": dtype, "name": name}
    if kind == "merge" and options["op"] == "divide":
        return tensor_op_classes()["divide"](**common)
    if kind == "merge":
        return getattr(layers, _MERGES[str(options["op"])])(**common)
    if kind == "permute":
        return layers.Permute(tuple(options["dims"]), **common)
    if kind == "repeat_vector":
        return layers.RepeatVector(int(options["n"]), **common)
    if kind == "relu":
        return layers.ReLU(
            max_value=options["max_value"],
            negative_slope=float(options["negative_slope"]),
            threshold=float(options["threshold"]),
            **common,
        )
    if kind == "elu":
        return layers.ELU(alpha=float(options["alpha"]), **common)
    if kind == "prelu":
        alpha = record.weights["alpha"]
        shared = list(options.get("shared_axes", ())) or None
        if alpha.size == 1 and shared is None and float(alpha.reshape(-1)[0]) >= 0:
            # torch's nn.PReLU(): one slope over any rank, which a Keras PReLU (whose alpha
            # has the input's shape) cannot hold before it knows the rank.
            return layers.LeakyReLU(negative_slope=float(alpha.reshape(-1)[0]), **common)
        return layers.PReLU(shared_axes=shared, **common)
    if kind == "softmax" and not options["log"]:
        return layers.Softmax(axis=int(options["axis"]), **common)
    if kind == "softmax" and int(options["axis"]) % rank == rank - 1:  # LogSoftmax(dim=1)
        return layers.Activation(keras_activation("log_softmax"), **common)
    if kind == "time_distributed":
        inner = build(options["layer"], keras, dtype, kernel, rank - 1)
        return layers.TimeDistributed(inner, **common)
    raise UnsupportedFeatureError(
        f"layer {name!r} ({record.class_name}): no Keras layer computes kind {kind!r} "
        f"with options {dict(options)}"
    )


def set_shape_weights(record: LayerRecord, layer: Any, set_weights: Callable[..., None]) -> None:
    """Give a built layer of this family its weights (``set_weights`` sets any other kind's)."""
    if record.kind == "prelu" and layer.get_weights():
        (variable,) = layer.get_weights()
        alpha = record.weights["alpha"].reshape(variable.shape)
        layer.set_weights([alpha.astype(variable.dtype)])
    elif record.kind == "time_distributed":
        set_weights(record.options["layer"], layer.layer)


__all__ = ["keras_shape_layer", "set_shape_weights"]
