"""``F.pad`` with zeros in a captured ``forward`` (a causal convolution's left padding, steps
padded channels-last, an image padded before a convolution), and the functional
activations ``F.softplus`` and ``F.mish``. Expected values are the module's own
``forward`` run by torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, torch_to_keras  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn, F = torch.nn, torch.nn.functional
RNG = np.random.default_rng(0)
STEPS = RNG.standard_normal((2, 9, 6)).astype("float32")


class CausalConvLSTM(nn.Module):
    """A causal convolution as temporal convolutional networks write it, then an LSTM."""

    def __init__(self, body=None) -> None:
        super().__init__()
        torch.manual_seed(91)
        self.conv = nn.Conv1d(6, 8, 3, dilation=2)
        self.lstm = nn.LSTM(8, 5, batch_first=True)
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.body is not None:
            return self.body(self, x)
        h = F.softplus(self.conv(F.pad(x.transpose(1, 2), (4, 0))))
        return F.mish(self.lstm(h.transpose(1, 2))[0])


class PaddedSteps(nn.Module):
    """Steps padded channels-last, two before and one after, read by a GRU."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(92)
        self.gru = nn.GRU(6, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(F.pad(x, (0, 0, 2, 1)))[0]


class PaddedImage(nn.Module):
    """A spectrogram image padded on both spatial axes, convolved, its height averaged."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(93)
        self.conv = nn.Conv2d(1, 4, 3)
        self.lstm = nn.LSTM(4, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(F.pad(x, (1, 1, 2, 0))))
        return self.lstm(h.mean(dim=2).transpose(1, 2))[0]


@pytest.mark.parametrize(
    ("make", "inputs"),
    [
        (CausalConvLSTM, STEPS),
        (PaddedSteps, STEPS),
        (PaddedImage, RNG.standard_normal((2, 1, 5, 11)).astype("float32")),
    ],
)
def test_zero_padding_agrees_on_every_framework(make, inputs) -> None:
    assert_agrees_everywhere(make().eval(), inputs=inputs)


def test_a_causal_padding_is_read_channels_first_and_runs_at_any_length() -> None:
    module = CausalConvLSTM().eval()
    graph = graph_from_torch(module)  # frames (B, T, 6), transposed for the convolution
    (pad,) = [r for r in graph.layers if r.kind == "zero_padding"]
    assert pad.options == {"padding": ((4, 0),), "data_format": "channels_first"}
    port = torch_to_keras(module)  # checked against forward
    x = RNG.standard_normal((1, 23, 6)).astype("float32")
    with torch.no_grad():
        want = module(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(np.asarray(port(x)), want, atol=1e-5)


def _padded(pad):
    """A body padding the channels-first steps with ``pad`` before the convolution."""
    return lambda m, x: m.lstm(m.conv(pad(x.transpose(1, 2))).transpose(1, 2))[0]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (_padded(lambda x: F.pad(x, (2, 2), mode="reflect")), "with mode 'reflect'"),
        (_padded(lambda x: F.pad(x, (4, 0), value=1.0)), "with the value 1.0"),
        (_padded(lambda x: F.pad(x, (0, -1))), "negative amounts"),
        (lambda m, x: m.lstm(F.pad(x, (1, 1, 1, 1)))[0], "on axes \\[1, 2\\] of a rank-3"),
    ],
    ids=["reflect", "value", "negative", "steps-and-features"],
)
def test_other_padding_is_refused_by_name(body, says) -> None:
    with pytest.raises(UnsupportedFeatureError, match=says) as caught:
        torch_to_keras(CausalConvLSTM(body).eval(), input_shape=(None, 6))
    assert "test_capture_padding.py" in str(caught.value)
