"""Custom layers read from a configuration: the class's own config and weights, as stored.

A layer whose class the user maps to a factory (:mod:`xframe_bilstm.custom`) becomes a record
of kind ``"custom"``. Its configuration is kept as the file has it; its weights are read in
the order the file stores them (the order the layer created them), with the shapes the file
declares: no configuration says what shapes a user's class makes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ...custom import custom_factory
from ...errors import UnsupportedFeatureError
from ...graph import LayerRecord
from ..weights import WeightRef
from .specs import LayerSpec, ModelSpec


def custom_record(layer: LayerSpec, refs: list[WeightRef], spec: ModelSpec) -> LayerRecord:
    """The record of a mapped custom layer; its factory runs when the port is built."""
    where = spec.where(layer)
    registered = layer.class_name if ">" in layer.class_name else None
    class_name = layer.class_name.split(">")[-1]
    factory = custom_factory(layer.class_name, registered)
    if factory is None:  # pragma: no cover - only mapped classes are given this kind
        raise UnsupportedFeatureError(f"{where}: no factory is mapped to {class_name!r}")
    weights = {
        str(index): _owned(ref.read(tuple(ref.shape), f"{where} weight {index}"))
        for index, ref in enumerate(refs)
    }
    config = dict(layer.config)
    options = {
        "config": config,
        "registered_name": registered,
        "build_torch": _builder(factory, config, list(weights.values())),
        "build_keras": None,
    }
    return LayerRecord(layer.name, "custom", class_name, layer.inputs, options, weights)


def _owned(array: np.ndarray) -> np.ndarray:
    """``array``, or a read-only copy of what it views: the port keeps a custom layer's
    weights (its factory builds from them), so they must not be views of a mapped file."""
    if array.flags.owndata:
        return array
    copy = array.copy()
    copy.setflags(write=False)
    return copy


def _builder(
    factory: Callable[..., Any], config: Mapping[str, Any], weights: list[np.ndarray]
) -> Callable[[], Any]:
    """``factory(config, weights)`` on copies, so a factory that writes into them is harmless."""

    def build() -> Any:
        return factory(dict(config), [np.array(weight) for weight in weights])

    return build
