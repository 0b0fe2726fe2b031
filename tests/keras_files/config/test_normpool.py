"""Normalization and pooling layers read from configurations: Keras 2 spellings, options
recorded, and what has no port refused by name, from the configuration alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from xframe_bilstm.errors import UnsupportedFeatureError
from xframe_bilstm.keras_files.config import build_graph, parse_layers
from xframe_bilstm.keras_files.weights import WeightRef


def _sequential(*layers: dict[str, Any], shape: list[Any]) -> dict[str, Any]:
    entries = [{"class_name": "InputLayer", "config": {"name": "x", "batch_shape": shape}}]
    return {"class_name": "Sequential", "config": {"name": "m", "layers": [*entries, *layers]}}


def _graph(config: dict[str, Any], weights: dict[str, list[np.ndarray]], major: int = 3) -> Any:
    spec = parse_layers(config, major=major, source="m.h5")

    def read(layer: Any) -> list[WeightRef]:
        arrays = weights.get(layer.name, [])
        return [WeightRef.of_array(f"{layer.name}[{i}]", a) for i, a in enumerate(arrays)]

    return build_graph(spec, read)


def _layer(class_name: str, **config: Any) -> dict[str, Any]:
    return {"class_name": class_name, "config": {"name": "layer", **config}}


def test_a_keras2_batch_norm_axis_list_is_read_as_its_one_axis() -> None:
    statistics = [np.ones(3, "float32"), np.zeros(3, "float32")]
    config = _sequential(
        _layer("BatchNormalization", axis=[2], center=False, scale=False, epsilon=0.01),
        shape=[None, 5, 3],
    )
    record = _graph(config, {"layer": statistics}, major=2).layer("layer")
    assert record.options == {"axis": 2, "epsilon": 0.01}
    assert set(record.weights) == {"moving_mean", "moving_variance"}


def test_pooling_defaults_and_aliases() -> None:
    config = _sequential(_layer("MaxPool1D", pool_size=[3], strides=None), shape=[None, 7, 2])
    assert _graph(config, {}).layer("layer").options == {
        "op": "max",
        "pool_size": (3,),
        "strides": (3,),  # strides default to the pool size
        "padding": "valid",
        "data_format": "channels_last",
    }
    config = _sequential(_layer("GlobalAvgPool2D", keepdims=True), shape=[None, 4, 4, 2])
    options = _graph(config, {}).layer("layer").options
    assert options == {"op": "average", "keepdims": True, "data_format": "channels_last"}


def test_group_norm_of_one_group_per_channel_counts_the_channels_from_its_weights() -> None:
    config = _sequential(_layer("GroupNormalization", groups=-1, epsilon=0.1), shape=[None, 5, 4])
    weights = {"layer": [np.full(4, 2.0, "float32"), np.ones(4, "float32")]}
    record = _graph(config, weights).layer("layer")
    assert record.options == {"axis": -1, "groups": 4, "epsilon": 0.1}
    np.testing.assert_array_equal(record.weights["gamma"], np.full(4, 2.0))
    unbuilt = _sequential(
        _layer("GroupNormalization", groups=-1, center=False, scale=False), shape=[None, 5, 4]
    )
    with pytest.raises(UnsupportedFeatureError, match="groups=-1"):
        _graph(unbuilt, {})


def test_a_keras2_group_norm_reading_a_mask_is_refused() -> None:
    """Keras 2 weighs its statistics by the mask broadcast against the input, which
    fails in Keras 2 itself; Keras 3 ignores the mask."""
    layers = (
        _layer("Embedding", input_dim=9, output_dim=4, mask_zero=True),
        _layer("GroupNormalization", groups=2) | {"config": {"name": "gn", "groups": 2}},
    )
    config = _sequential(*layers, shape=[None, 5])
    weights = {"layer": [np.ones((9, 4), "float32")], "gn": [np.ones(4, "float32")] * 2}
    with pytest.raises(UnsupportedFeatureError, match=r"'gn'.*Keras 2 GroupNormalization"):
        _graph(config, weights, major=2)
    assert _graph(config, weights, major=3).masked("gn")


@pytest.mark.parametrize(
    ("layer", "weights", "message"),
    [
        (_layer("LayerNormalization", rms_scaling=True, center=False), 1, "rms_scaling=True"),
        (_layer("BatchNormalization", renorm=True), 4, "renorm=True"),
        (_layer("BatchNormalization", axis=[1, 2]), 4, r"axis=\[1, 2\]"),
        (_layer("AveragePooling1D", pool_size=2, padding="causal"), 0, "padding='causal'"),
    ],
)
def test_what_has_no_port_is_refused_by_name(layer: dict, weights: int, message: str) -> None:
    config = _sequential(layer, shape=[None, 5, 3])
    arrays = {"layer": [np.ones(3, "float32")] * weights}
    with pytest.raises(UnsupportedFeatureError, match=rf"'layer'.*{message}"):
        _graph(config, arrays)
