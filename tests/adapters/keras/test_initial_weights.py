"""Keras kernels created from the weights: the values, the config and a saved file.

The expected weights are torch's own parameters, transposed into Keras's orientation; the
expected config is that of a Keras layer constructed with the same options.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # before Keras/TensorFlow
keras = pytest.importorskip("keras")

from xframe_bilstm import torch_to_keras  # noqa: E402
from xframe_bilstm.adapters.keras import keras_to_canonical  # noqa: E402
from xframe_bilstm.adapters.keras.initial_weights import lend_weights  # noqa: E402
from xframe_bilstm.errors import WeightShapeError  # noqa: E402

pytestmark = pytest.mark.keras


def _torch_lstm() -> torch.nn.LSTM:
    torch.manual_seed(3)
    return torch.nn.LSTM(5, 4, num_layers=2, batch_first=True, bidirectional=True)


def test_kernels_hold_torch_weights_transposed() -> None:
    module = _torch_lstm()
    model = torch_to_keras(module, verify=False)
    for index, layer in enumerate(model.layers):
        for half, suffix in ((layer.forward_layer, ""), (layer.backward_layer, "_reverse")):
            weight = dict(module.named_parameters())
            kernel = weight[f"weight_ih_l{index}{suffix}"].detach().numpy()
            recurrent = weight[f"weight_hh_l{index}{suffix}"].detach().numpy()
            np.testing.assert_array_equal(half.cell.kernel.numpy(), kernel.T)
            np.testing.assert_array_equal(half.cell.recurrent_kernel.numpy(), recurrent.T)


def test_config_is_an_ordinary_layers_and_saving_round_trips(tmp_path) -> None:
    module = _torch_lstm()
    model = torch_to_keras(module, verify=False)
    config = model.layers[0].get_config()
    forward = config["layer"]["config"]
    for key in ("kernel_initializer", "recurrent_initializer"):
        assert forward[key]["class_name"] == "Zeros"  # the configured one, not the weights
    assert len(json.dumps(model.get_config())) < 20_000  # no weight embedded

    path = tmp_path / "port.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(0).standard_normal((2, 6, 5)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    expected, _ = module(torch.from_numpy(x))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected.detach(), atol=1e-6)


def test_a_weight_of_the_wrong_shape_is_refused_naming_the_layer() -> None:
    gru = keras.layers.GRU(2, name="source_gru")
    gru.build((None, None, 3))
    canonical = keras_to_canonical(gru).layers[0]
    target = keras.layers.GRU(2, name="target_gru")
    restore = lend_weights(canonical, target)
    with pytest.raises(WeightShapeError, match=r"'target_gru'.*kernel.*\(4, 6\).*\(3, 6\)"):
        target.build((None, None, 4))
    assert restore() is False  # the recurrent kernel was never created from its weight
    assert target.cell.kernel_initializer.__class__.__name__ == "GlorotUniform"
