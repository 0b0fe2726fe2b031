"""``repeat_interleave`` in a captured ``forward``: each position of one axis repeated in a
row, as vocoders upsample frames to samples. Expected values are the module's own
``forward`` run by torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, keras_to_torch, torch_to_keras  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn


class FrameUpsampler(nn.Module):
    """Frames projected, each repeated 3 times along time, then a GRU over the samples."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(71)
        self.project = nn.Linear(4, 5)
        self.gru = nn.GRU(5, 6, batch_first=True)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.gru(self.project(frames).repeat_interleave(3, dim=1))[0]


class Stretch(nn.Module):
    """Channels-first features stretched along time (axis -1) and along channels (-2, once:
    nothing to compute), then convolved and read by an LSTM."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(72)
        self.conv = nn.Conv1d(4, 5, 3, padding=1)
        self.lstm = nn.LSTM(5, 6, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stretched = x.repeat_interleave(1, -2).repeat_interleave(2, -1)
        return self.lstm(torch.relu(self.conv(stretched)).transpose(1, 2))[0]


def _torch(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.as_tensor(x)).numpy()


@pytest.mark.parametrize(
    ("make", "input_shape"), [(FrameUpsampler, (None, 4)), (Stretch, (4, None))]
)
def test_repeated_steps_agree_on_every_framework(make, input_shape, tmp_path) -> None:
    module = make().eval()
    shape = (3, *(5 if size is None else size for size in input_shape))
    x = np.random.default_rng(7).standard_normal(shape).astype("float32")
    assert_agrees_everywhere(module, inputs=x)
    path = tmp_path / "port.keras"
    torch_to_keras(module, input_shape=input_shape).save(path)
    port = keras_to_torch(path)  # read back from the saved layer, checked against Keras
    with torch.no_grad():
        np.testing.assert_allclose(port(torch.as_tensor(x)).numpy(), _torch(module, x), atol=2e-6)


def test_one_repeat_computes_nothing() -> None:
    kinds = [record.kind for record in graph_from_torch(Stretch().eval()).layers]
    assert kinds.count("repeat") == 1


class PerPosition(FrameUpsampler):
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        counts = torch.tensor([1, 2, 1, 2, 1])  # repeats per step: a duration model's
        return self.gru(self.project(frames).repeat_interleave(counts, dim=1))[0]


class OverTheBatch(FrameUpsampler):
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.gru(self.project(frames).repeat_interleave(2, dim=0))[0]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (PerPosition, r"could not capture .*repeat_interleave\(counts, dim=1\)"),
        (OverTheBatch, "repeat_interleave over the batch axis"),
    ],
)
def test_other_repeats_are_refused_by_name(make, message: str) -> None:
    with pytest.raises(UnsupportedFeatureError, match=message):
        torch_to_keras(make().eval(), input_shape=(5, 4))
