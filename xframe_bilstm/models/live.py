"""Live Keras models (Keras 3 or tf_keras) into the same model graph as files.

Rules of this module:

- A live model is read through its configuration and each layer's ``get_weights()``, the
  same path a file takes (:mod:`xframe_bilstm.keras_files.config`), so a model and its saved
  file port the same way.
- Keras 3 models are serialized with ``keras.saving.serialize_keras_object``; tf_keras
  (Keras 2) models with ``get_config()``, and read as Keras 2 (``hard_sigmoid`` is Keras 2's).
- Frameworks are looked up in ``sys.modules``: a live model means its framework is loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from ..errors import UnsupportedFeatureError
from ..graph import ModelGraph
from ..keras_files.config import LayerSpec, ModelSpec, build_graph, parse_layers
from ..keras_files.weights import WeightRef


def is_whole_keras_model(obj: Any) -> bool:
    """Whether ``obj`` is a Keras model that is more than a stack of recurrent layers.

    Example:
        >>> is_whole_keras_model(object())
        False
    """
    flavour = keras_flavour(obj)
    if flavour is None:
        return False
    if flavour == 2:  # tf_keras objects only go through their configuration
        return True
    keras = sys.modules["keras"]
    if not isinstance(obj, keras.Sequential):
        return True
    from ..adapters.keras import INFERENCE_IDENTITY

    # RNN(cell) layers are read through their configuration, like a whole model's.
    plain = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)
    stack_classes = (
        *plain,
        keras.layers.InputLayer,
        *(getattr(keras.layers, name) for name in INFERENCE_IDENTITY),
    )

    def in_stack(layer: Any) -> bool:
        if isinstance(layer, keras.layers.Bidirectional):
            return isinstance(layer.forward_layer, plain)
        return isinstance(layer, stack_classes)

    return not all(in_stack(layer) for layer in obj.layers)


def keras_flavour(obj: Any) -> int | None:
    """3 for a Keras 3 model, 2 for a tf_keras model, None for anything else.

    Example:
        >>> keras_flavour(object()) is None
        True
    """
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(obj, keras.Model):
        return 3
    tf_keras = sys.modules.get("tf_keras")
    if tf_keras is not None and isinstance(obj, tf_keras.Model):
        return 2
    return None


def spec_from_keras(model: Any, *, strict: bool = True) -> ModelSpec:
    """The parsed configuration of a live Keras 3 or tf_keras model."""
    major = keras_flavour(model)
    if major is None:
        raise UnsupportedFeatureError(f"{type(model).__name__} is not a Keras model")
    source = f"Keras model {model.name!r}"
    if major == 3:
        config = sys.modules["keras"].saving.serialize_keras_object(model)
    else:
        config = {"class_name": type(model).__name__, "config": model.get_config()}
    return parse_layers(config, major=major, source=source, strict=strict)


def graph_from_keras(model: Any) -> ModelGraph:
    """The model graph of a built Keras 3 or tf_keras ``Sequential`` or functional model."""
    spec = spec_from_keras(model)
    source = spec.source
    arrays = dict(_layer_weights(model, ()))

    def read_weights(layer: LayerSpec) -> list[WeightRef]:
        return [
            WeightRef.of_array(f"{layer.name}[{index}]", array, source)
            for index, array in enumerate(arrays.get(layer.path or (layer.name,), []))
        ]

    return build_graph(spec, read_weights)


def _layer_weights(model: Any, scope: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], list]]:
    """Each layer's weights by its path (the nested models holding it, then its name)."""
    for layer in model.layers:
        if keras_flavour(layer) is not None:  # a model used as a layer
            yield from _layer_weights(layer, (*scope, layer.name))
        else:
            yield (*scope, layer.name), layer.get_weights()


__all__ = ["graph_from_keras", "keras_flavour", "spec_from_keras"]
