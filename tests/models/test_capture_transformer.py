"""``nn.TransformerEncoderLayer`` and ``nn.TransformerEncoder`` after or before a recurrent
module, as hybrid models stack them: no layer of the package stands for them, so what they
compute is read operation by operation (their attention as ``nn.MultiheadAttention``), in
either layout, and so is any child of a chain the package does not read whole.

Expected values come from the module itself, ``module(x)``, run by torch.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, torch_to_keras  # noqa: E402

from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [
    pytest.mark.keras,
    pytest.mark.torch,
    pytest.mark.filterwarnings("ignore:enable_nested_tensor:UserWarning"),
]

nn = torch.nn


class Hybrid(nn.Module):
    """An LSTM, then two transformer encoder layers, then a Linear per step (or, written
    time-major, on the last step)."""

    def __init__(self, batch_first: bool, **options) -> None:
        super().__init__()
        torch.manual_seed(51)
        self.batch_first = batch_first
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        layer = nn.TransformerEncoderLayer(
            8, 2, dim_feedforward=16, dropout=0.1, batch_first=batch_first, **options
        )
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x)
        if self.batch_first:
            return self.fc(self.encoder(h))
        return self.fc(self.encoder(h.transpose(0, 1))[-1])


@pytest.mark.parametrize(
    ("batch_first", "options"),
    [
        pytest.param(True, {}, id="batch-first"),
        pytest.param(False, {}, id="time-major"),
        pytest.param(True, {"norm_first": True, "activation": "gelu"}, id="norm-first-gelu"),
    ],
)
def test_a_transformer_encoder_after_an_lstm_agrees_everywhere(batch_first, options) -> None:
    assert_agrees_everywhere(Hybrid(batch_first, **options).eval(), steps=8)


def test_a_chain_holding_a_transformer_layer_is_read_operation_by_operation() -> None:
    torch.manual_seed(52)
    chain = nn.Sequential(
        nn.Embedding(10, 8),
        nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True),
        nn.Linear(8, 3),
    ).eval()
    model = torch_to_keras(chain)  # verified against chain(ids)
    ids = np.random.default_rng(4).integers(0, 10, size=(2, 6))
    with torch.no_grad():
        expected = chain(torch.as_tensor(ids)).numpy()
    np.testing.assert_allclose(np.asarray(model(ids)), expected, rtol=1e-5, atol=2e-6)


class RunningSum(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(x, dim=1)


def test_a_child_read_neither_way_is_named_with_the_option_and_the_operation() -> None:
    chain = nn.Sequential(nn.Linear(4, 4), RunningSum()).eval()
    with pytest.raises(UnsupportedFeatureError) as refused:
        torch_to_keras(chain)
    message = str(refused.value)
    assert message.startswith("cannot convert child 'runningsum_1' (RunningSum)")
    assert "custom_modules={RunningSum: factory}" in message
    assert "applies aten.cumsum" in message
