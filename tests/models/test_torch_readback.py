"""Reading a whole-model port back: the graph it keeps, the weights it holds now."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, keras_to_torch, torch_to_keras  # noqa: E402
from xframe_bilstm.inputs import example_inputs  # noqa: E402
from xframe_bilstm.models.port import call_keras_model  # noqa: E402
from xframe_bilstm.models.torch_readback import current_graph  # noqa: E402

from ..test_custom import CUSTOM, SqueezeLayer, chord_model  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def test_the_port_keeps_its_graph_without_a_copy_of_the_weights() -> None:
    model = chord_model(SqueezeLayer(factor=0.5))
    port = keras_to_torch(model, custom_layers=CUSTOM)
    kept = port.keras_graph.layer("chords").weights["kernel"]
    assert kept.strides == (0, 0) and kept.shape == (6, 2)
    read = current_graph(port).layer("chords").weights["kernel"]
    np.testing.assert_array_equal(read, model.get_layer("chords").layer.kernel.numpy())


def test_a_custom_layer_converts_back_with_the_weights_its_factory_was_given() -> None:
    model = chord_model(SqueezeLayer(factor=0.5, name="squeeze"))
    port = keras_to_torch(model, custom_layers=CUSTOM)
    back = torch_to_keras(port)
    inputs = example_inputs(port.keras_graph, batch=3, steps=5, seed=4)
    np.testing.assert_allclose(
        call_keras_model(back, inputs)[0], call_keras_model(model, inputs)[0], rtol=0, atol=2e-5
    )
    with torch.no_grad():  # changed in torch: no factory reads the user's module, so refused
        port.squeeze.scale.add_(0.3)
    with pytest.raises(UnsupportedFeatureError, match=r"'squeeze' \(SqueezeLayer\).*custom_mod"):
        torch_to_keras(port)
