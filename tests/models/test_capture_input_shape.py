"""torch_to_keras(module, input_shape=...): the user's sizes for the axes no child fixes.

Expected values come from the module itself, ``module(x)``, run by torch.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, compare, torch_to_keras  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn


class TallCRNN(nn.Module):
    """(B, 1, 32, W) images: the pooling brings a height of 32, and only 32, down to 1."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d((32, 2)))
        self.rnn = nn.LSTM(4, 5, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(10, 6)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.cnn(images).squeeze(2).permute(0, 2, 1)
        return self.fc(self.rnn(features)[0])


class Projected(nn.Module):
    """A Linear over each step's 12 features first: its own shape guess is one (B, 12) row."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.proj = nn.Linear(12, 8)
        self.lstm = nn.LSTM(8, 5, batch_first=True)
        self.fc = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lstm(torch.relu(self.proj(x)))[0]
        return self.fc(out[:, -1])


def _run(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module.eval()(torch.from_numpy(x)).numpy()


def test_a_crnn_with_a_fixed_image_height_is_read_at_that_height() -> None:
    module = TallCRNN()
    with pytest.raises(UnsupportedFeatureError):  # at the default height, 7, it cannot run
        torch_to_keras(module, verify=False)
    model = torch_to_keras(module, input_shape=(1, 32, None))
    assert tuple(model.input_shape) == (None, 1, 32, None)
    images = np.random.default_rng(3).standard_normal((2, 1, 32, 12)).astype("float32")
    got = np.asarray(model(images))
    assert got.shape == (2, 6, 6)
    assert np.abs(got - _run(module, images)).max() < 1e-5


def test_a_fixed_feature_size_after_a_linear_is_read() -> None:
    module = Projected()
    model = torch_to_keras(module, input_shape=[None, 12])
    assert tuple(model.input_shape) == (None, None, 12)
    x = np.random.default_rng(4).standard_normal((3, 9, 12)).astype("float32")
    assert np.abs(np.asarray(model(x)) - _run(module, x)).max() < 1e-5


def test_a_plain_chain_takes_the_given_shape() -> None:
    torch.manual_seed(7)
    chain = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU())
    model = torch_to_keras(chain, input_shape=(2, 20))
    assert tuple(model.input_shape) == (None, 2, 20)
    x = np.random.default_rng(5).standard_normal((2, 2, 20)).astype("float32")
    assert np.abs(np.asarray(model(x)) - _run(chain, x)).max() < 1e-5


@pytest.mark.parametrize(
    ("shape", "refused"),
    [
        ((3, 32, None), "its first module reads size 1 on axis 1 (shape (batch, 1, None, None))"),
        ((1, 16, None), "input_shape=(1, 16, None) does not fit TallCRNN: torch.export"),
        ((1, None, None), "2 free axes"),
        ((1, -32, None), "each size must be a positive int or None (found [-32])"),
        ("1, 32", "expected a tuple of sizes without the batch axis"),
    ],
)
def test_shapes_that_do_not_fit_are_refused_by_name(shape, refused: str) -> None:
    with pytest.raises(UnsupportedFeatureError) as caught:
        torch_to_keras(TallCRNN(), input_shape=shape)
    assert refused in str(caught.value)


def test_a_recurrent_module_fixes_its_own_input() -> None:
    with pytest.raises(UnsupportedFeatureError, match="read for modules with children only"):
        torch_to_keras(nn.LSTM(3, 4, batch_first=True), input_shape=(None, 3))


class FramesFirst(nn.Module):
    """Frames (B, T, F) transposed for the convolution, then back: its first module reads
    channels first, its input does not."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(6, 5, 3, padding=1)
        self.lstm = nn.LSTM(5, 4, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, frames):
        x = torch.relu(self.conv(frames.transpose(1, 2))).transpose(1, 2)
        return self.head(self.lstm(x)[0])


def test_a_forward_that_transposes_its_input_takes_the_shape_given() -> None:
    torch.manual_seed(3)
    module = FramesFirst().eval()
    model = torch_to_keras(module, input_shape=(None, 6))  # verified against module(x)
    assert tuple(model.input_shape) == (None, None, 6)
    x = np.random.default_rng(2).standard_normal((3, 9, 6)).astype("float32")
    assert np.abs(np.asarray(model(x)) - _run(module, x)).max() < 1e-5


def test_compare_captures_a_module_at_the_layout_of_the_inputs_given() -> None:
    torch.manual_seed(3)
    frames = np.random.default_rng(2).standard_normal((3, 9, 6)).astype("float32")
    report = compare(FramesFirst().eval(), frameworks=["torch", "keras"], inputs=frames)
    assert report, report.lines()


def test_a_shape_forward_cannot_take_names_what_its_first_module_reads() -> None:
    with pytest.raises(UnsupportedFeatureError) as caught:
        torch_to_keras(FramesFirst().eval(), input_shape=(None, 7))
    message = str(caught.value)
    assert "input_shape=(None, 7) does not fit FramesFirst" in message
    assert "its first module reads size 6 on axis 1" in message


class DeclaredOutOfOrder(nn.Module):
    """A tagger declaring its LSTM before the Embedding its forward calls first."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.lstm = nn.LSTM(4, 5, batch_first=True)
        self.tags = nn.Linear(5, 3)
        self.embedding = nn.Embedding(10, 4)

    def forward(self, ids):
        return self.tags(self.lstm(self.embedding(ids))[0])


def test_the_input_is_shaped_by_the_first_module_forward_calls() -> None:
    module = DeclaredOutOfOrder().eval()
    model = torch_to_keras(module)  # verified against module(ids)
    assert tuple(model.input_shape) == (None, None)
    ids = np.random.default_rng(3).integers(0, 10, size=(2, 8))
    with torch.no_grad():
        expected = module(torch.from_numpy(ids)).numpy()
    assert np.abs(np.asarray(model(ids)) - expected).max() < 1e-5


class ChannelsFirstBLSTM(nn.Module):
    """demucs's layout: (B, C, T) permuted to (T, B, C) for a BiLSTM, and back."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.lstm = nn.LSTM(6, 6, bidirectional=True)
        self.linear = nn.Linear(12, 6)

    def forward(self, x):
        return self.linear(self.lstm(x.permute(2, 0, 1))[0]).permute(1, 2, 0) + x


def test_a_sequence_forward_transposes_is_also_guessed_channels_first() -> None:
    module = ChannelsFirstBLSTM().eval()
    model = torch_to_keras(module)  # no input_shape: (6, None) guessed after (None, 6)
    assert tuple(model.input_shape) == (None, 6, None)
    x = np.random.default_rng(5).standard_normal((2, 6, 11)).astype("float32")
    assert np.abs(np.asarray(model(x)) - _run(module, x)).max() < 1e-5
