"""Channels-first convolutions rebuilt in Keras 3, run where the steps equal the filters:
Keras 3's TensorFlow ``ops.add`` reads a trailing (1, C, 1) operand as a bias over the last
axis when that axis also has C positions, which Keras's own ``Conv1D`` adds its bias with.
Expected values are the torch module's own ``forward``."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import keras_to_torch, torch_to_keras  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn


class ConvTagger(nn.Module):
    """(B, 4, T) features: a Conv1d of 6 filters with a bias, an offset per channel held by
    the module (added by TensorFlow's own operator, unaffected), then an LSTM."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(101)
        self.conv = nn.Conv1d(4, 6, 3, padding=1)
        self.offset = nn.Parameter(torch.randn(6, 1))
        self.lstm = nn.LSTM(6, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm((self.conv(x) + self.offset).transpose(1, 2))[0]


@pytest.mark.parametrize("steps", [6, 11])  # 6: as many steps as filters
def test_a_channels_first_port_adds_its_biases_on_the_channels(steps: int, tmp_path) -> None:
    module = ConvTagger().eval()
    x = np.random.default_rng(3).standard_normal((2, 4, steps)).astype("float32")
    with torch.no_grad():
        expected = module(torch.as_tensor(x)).numpy()
    model = torch_to_keras(module)
    np.testing.assert_allclose(np.asarray(model(x)), expected, atol=1e-5)
    path = tmp_path / "port.keras"
    model.save(path)
    (conv,) = [record for record in read_model(path).layers if record.kind == "conv"]
    assert conv.class_name == "xframe_bilstm>ChannelsFirstConv1D"
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(path)(x)), expected, atol=1e-5)
    with torch.no_grad():
        back = keras_to_torch(path)(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(back, expected, atol=1e-5)
