"""The torch port of normalization and pooling layers, and its Keras rebuild, against the
real Keras layers, one option that changes the math at a time."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm.adapters.keras.graph import graph_to_keras  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.inputs import example_inputs  # noqa: E402
from xframe_bilstm.models.live import graph_from_keras  # noqa: E402
from xframe_bilstm.models.to_torch import build_torch  # noqa: E402

from .. import normpool_models  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]
CASES = sorted(normpool_models.layer_cases(keras))


@pytest.mark.parametrize("name", CASES)
def test_the_port_and_the_rebuild_compute_what_the_keras_layer_computes(name: str) -> None:
    model = normpool_models.layer_model(keras, name)
    graph = graph_from_keras(model)
    inputs = example_inputs(graph, batch=3, steps=7, seed=6)
    expected = np.asarray(model(inputs[0]))
    tolerance = derived_tolerance(graph, inputs)
    with torch.no_grad():
        ported = build_torch(graph)(torch.from_numpy(inputs[0])).numpy()
    np.testing.assert_allclose(ported, expected, rtol=0, atol=tolerance)
    rebuilt = graph_to_keras(graph)
    np.testing.assert_allclose(np.asarray(rebuilt(inputs[0])), expected, rtol=0, atol=tolerance)


def test_the_batch_norm_port_keeps_keras_epsilon_and_its_statistics() -> None:
    model = normpool_models.layer_model(keras, "bn_channels_first")  # epsilon=0.2
    port = build_torch(graph_from_keras(model))
    module = next(m for m in port.modules() if type(m).__name__ == "BatchNorm")
    assert module.epsilon == pytest.approx(0.2)
    gamma, beta, mean, variance = model.layers[-1].get_weights()
    np.testing.assert_array_equal(module.running_var.numpy(), variance)
    x = torch.ones(1, 3, 5, 4)
    expected = (1 - mean) / np.sqrt(variance + 0.2) * gamma + beta  # by hand, channel axis 1
    with torch.no_grad():
        np.testing.assert_allclose(port(x)[0, :, 0, 0].numpy(), expected, rtol=1e-5)
