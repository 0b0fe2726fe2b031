"""Normalization and pooling records rebuilt as Keras 3's own layers, weights set.

A record keeps Keras's meaning (a torch-born one says ``data_format="channels_first"`` or
``axis=1``), so each becomes the Keras layer of the same options; a global pool is 1-D,
2-D or 3-D by the rank of the tensor it reads.
"""

from __future__ import annotations

from typing import Any

from ...graph import LayerRecord

KINDS = ("batch_norm", "layer_norm", "group_norm", "pool", "global_pool")
_POOLS = {
    ("max", 1): "MaxPooling1D",
    ("max", 2): "MaxPooling2D",
    ("average", 1): "AveragePooling1D",
    ("average", 2): "AveragePooling2D",
}
_GLOBAL = {"max": "GlobalMaxPooling", "average": "GlobalAveragePooling"}


def normpool_layer(record: LayerRecord, keras: Any, dtype: str, rank: int) -> Any:
    """The Keras layer of a normalization or pooling ``record`` reading a rank-``rank`` tensor.

    Example:
        >>> import keras
        >>> record = LayerRecord("pool", "global_pool", "GlobalAveragePooling2D", ("x",),
        ...                      {"op": "average", "keepdims": False})
        >>> type(normpool_layer(record, keras, "float32", 4)).__name__
        'GlobalAveragePooling2D'
    """
    layers, options, name = keras.layers, record.options, record.name
    affine = {"center": "beta" in record.weights, "scale": "gamma" in record.weights}
    if record.kind == "batch_norm":
        return layers.BatchNormalization(
            axis=int(options["axis"]),
            epsilon=float(options["epsilon"]),
            dtype=dtype,
            name=name,
            **affine,
        )
    if record.kind == "layer_norm":
        return layers.LayerNormalization(
            axis=list(options["axis"]),
            epsilon=float(options["epsilon"]),
            dtype=dtype,
            name=name,
            **affine,
        )
    if record.kind == "group_norm":
        return layers.GroupNormalization(
            groups=int(options["groups"]),
            axis=int(options["axis"]),
            epsilon=float(options["epsilon"]),
            dtype=dtype,
            name=name,
            **affine,
        )
    data_format = str(options.get("data_format", "channels_last"))
    if record.kind == "global_pool":
        pool = getattr(layers, f"{_GLOBAL[str(options['op'])]}{rank - 2}D")
        return pool(
            data_format=data_format, keepdims=bool(options["keepdims"]), dtype=dtype, name=name
        )
    pool = getattr(layers, _POOLS[str(options["op"]), len(options["pool_size"])])
    return pool(
        pool_size=tuple(options["pool_size"]),
        strides=tuple(options["strides"]),
        padding=str(options["padding"]),
        data_format=data_format,
        dtype=dtype,
        name=name,
    )


def set_normpool_weights(record: LayerRecord, layer: Any) -> None:
    """Give a built normalization layer the record's weights, in Keras's order."""
    order = ("gamma", "beta", "moving_mean", "moving_variance")
    if record.kind in ("batch_norm", "layer_norm", "group_norm"):
        layer.set_weights([record.weights[key] for key in order if key in record.weights])


__all__ = ["KINDS", "normpool_layer", "set_normpool_weights"]
