"""diagnose() of a whole model with normalization layers: a port whose moving statistics
differ is named by layer and weight."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import diagnose, keras_to_torch  # noqa: E402

from .. import normpool_models  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def test_a_port_with_other_moving_statistics_is_named_by_layer() -> None:
    model = normpool_models.sequence_model(keras)
    port = keras_to_torch(model)
    assert diagnose(model, port).code == "equivalent"
    with torch.no_grad():
        port.bn.running_var.mul_(1.5)
    result = diagnose(model, port)
    assert result.code == "weights_differ"
    assert "layer 'bn' (BatchNormalization)" in result.message
    assert "moving_variance vs running_var" in result.message


def test_a_port_with_another_layer_norm_scale_is_named_by_layer() -> None:
    model = normpool_models.sequence_model(keras)
    port = keras_to_torch(model)
    with torch.no_grad():
        port.ln.weight.add_(0.5)
    result = diagnose(model, port)
    assert result.code == "weights_differ"
    assert "layer 'ln' (LayerNormalization)" in result.message and "gamma" in result.message


def test_a_port_with_another_group_norm_offset_is_named_by_layer() -> None:
    model = normpool_models.sequence_model(keras)
    port = keras_to_torch(model)
    with torch.no_grad():
        port.gn.bias.add_(0.5)
    result = diagnose(model, port)
    assert result.code == "weights_differ"
    assert "layer 'gn' (GroupNormalization)" in result.message and "beta" in result.message
