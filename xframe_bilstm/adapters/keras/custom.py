"""Custom layers rebuilt in Keras: the user's class as Keras knows it, or the user's factory.

A custom record read from a Keras model is rebuilt from the class Keras has registered
under its name (``keras.saving.register_keras_serializable``) or passed in
``custom_objects``, with its configuration and weights; one read from a torch child is the
Keras layer its factory returns. Nothing is imported: a class Keras does not know is
refused by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import UnsupportedFeatureError
from ...graph import LayerRecord


def custom_keras_layer(
    record: LayerRecord, keras: Any, dtype: str, custom_objects: Mapping[str, Any] | None = None
) -> Any:
    """The Keras layer of a custom record, not yet called."""
    where = f"layer {record.name!r} ({record.class_name})"
    build = record.options.get("build_keras")
    if build is not None:
        try:
            layer = build()
        except Exception as error:  # the user's factory
            raise UnsupportedFeatureError(
                f"{where}: its factory raised {type(error).__name__}: {error}"
            ) from error
        if not isinstance(layer, keras.layers.Layer):
            raise UnsupportedFeatureError(
                f"{where}: its factory returned a {type(layer).__name__}, not a Keras layer"
            )
        return layer
    cls = registered_class(record, keras, custom_objects)
    config = {**record.options["config"], "name": record.name, "dtype": dtype}
    return cls.from_config(config)


def registered_class(
    record: LayerRecord, keras: Any, custom_objects: Mapping[str, Any] | None = None
) -> Any:
    """The class Keras knows under the record's class or registered name; refused if none."""
    known = {**keras.saving.get_custom_objects(), **(custom_objects or {})}
    registered = record.options.get("registered_name")
    for key, cls in known.items():
        if key in (registered, record.class_name) or key.endswith(f">{record.class_name}"):
            return cls
    raise UnsupportedFeatureError(
        f"layer {record.name!r} ({record.class_name}) is a custom layer that Keras does not "
        "know here: register its class with keras.saving.register_keras_serializable (or "
        "pass it in custom_objects) to rebuild the model in Keras"
    )


def set_custom_weights(record: LayerRecord, layer: Any) -> None:
    """Give a rebuilt custom layer the weights it was read with, in their stored order."""
    if record.weights:
        layer.set_weights([record.weights[str(index)] for index in range(len(record.weights))])


__all__ = ["custom_keras_layer", "registered_class", "set_custom_weights"]
