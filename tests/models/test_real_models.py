"""Models as users write them, trained a few steps, through ``torch_to_keras``.

An OCR CRNN (convolutions, batch norm and pooling, the feature map flattened to a sequence,
a BiLSTM, ``log_softmax``), a BiLSTM diacritizer with self-attention written in ``forward``,
a language identifier summing over time, a VAD looping an ``LSTMCell`` between two
``Conv1d``, and torchaudio's DeepSpeech and demucs's BLSTM as the packages define them
(time-major around a bidirectional ``nn.RNN``/``nn.LSTM`` with ``batch_first=False``).
Each is checked by ``compare(module, against=keras_model)``: the module's own
``module(x)`` against the Keras model, within the tolerance compare derives; the models
whose input ``compare`` cannot guess (an image's height, DeepSpeech's channel axis,
BLSTM's channels first) on inputs given, longer than the conversion saw.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import compare, torch_to_keras  # noqa: E402

from ..packaged_models import BLSTM, DeepSpeech  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn
F = torch.nn.functional


class CRNN(nn.Module):
    """Text-line images of height 16: two conv blocks leave 32 features per column."""

    def __init__(self, classes: int = 12) -> None:
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d((4, 1)),
        )
        self.rnn = nn.LSTM(32, 16, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.cnn(x)
        b, c, h, w = features.size()
        features = features.view(b, c * h, w).permute(0, 2, 1)
        out, _ = self.rnn(features)
        return F.log_softmax(self.fc(out), dim=-1)


class SqueezedCRNN(CRNN):
    """The height pooled to 1 and squeezed, as most CRNNs are written."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn[-1] = nn.MaxPool2d((8, 1))
        self.rnn = nn.LSTM(16, 16, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.cnn(x).squeeze(2).permute(0, 2, 1))
        return self.fc(out).log_softmax(-1)


class AttentionDiacritizer(nn.Module):
    def __init__(self, vocab: int = 40, tags: int = 8) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, 16, padding_idx=0)
        self.lstm = nn.LSTM(16, 12, batch_first=True, bidirectional=True)
        self.q, self.k, self.v = nn.Linear(24, 24), nn.Linear(24, 24), nn.Linear(24, 24)
        self.out = nn.Linear(48, tags)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.emb(ids))
        q, k, v = self.q(h), self.k(h), self.v(h)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        mask = (ids != 0).unsqueeze(1)
        scores = scores.masked_fill(~mask, float("-inf"))
        context = torch.softmax(scores, dim=-1) @ v
        return self.out(torch.cat([h, context], dim=-1))


class LanguageId(nn.Module):
    def __init__(self, vocab: int = 50, languages: int = 5) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, 16)
        self.lstm = nn.LSTM(16, 16, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(32, languages)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.emb(ids))
        return self.fc(out.sum(dim=1))


class VAD(nn.Module):
    """MFCC frames (B, 13, T) to a speech probability per frame."""

    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.Conv1d(13, 16, 3, padding=1)
        self.cell = nn.LSTMCell(16, 16)
        self.post = nn.Conv1d(16, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = torch.relu(self.pre(x)).permute(0, 2, 1)
        h = frames.new_zeros(frames.size(0), 16)
        c = frames.new_zeros(frames.size(0), 16)
        outputs = []
        for t in range(frames.size(1)):
            h, c = self.cell(frames[:, t], (h, c))
            outputs.append(h)
        return torch.sigmoid(self.post(torch.stack(outputs, dim=1).permute(0, 2, 1)))


def _trained(module: nn.Module, x: torch.Tensor) -> nn.Module:
    """A few Adam steps towards random targets, so weights and running statistics are not
    their initial values; then eval mode, as a model is shipped."""
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    module.train()
    with torch.no_grad():
        target = torch.randn_like(module(x))
    for _ in range(5):
        optimizer.zero_grad()
        F.mse_loss(module(x), target).backward()
        optimizer.step()
    return module.eval()


def _case(name: str) -> tuple[nn.Module, torch.Tensor, dict]:
    torch.manual_seed(14)
    if name == "demucs_blstm":
        return BLSTM(), torch.randn(4, 6, 12), {"input_shape": (6, None)}
    if name == "deepspeech":
        return DeepSpeech(), torch.randn(4, 1, 12, 13), {"input_shape": (1, None, 13)}
    if name == "crnn":
        return CRNN(), torch.randn(4, 1, 16, 20), {"input_shape": (1, 16, None)}
    if name == "squeezed_crnn":
        return SqueezedCRNN(), torch.randn(4, 1, 16, 20), {"input_shape": (1, 16, None)}
    if name == "diacritizer":
        ids = torch.randint(1, 40, (4, 9))
        ids[0, 6:] = 0  # right padding
        return AttentionDiacritizer(), ids, {}
    if name == "language_id":
        return LanguageId(), torch.randint(0, 50, (4, 11)), {}
    return VAD(), torch.randn(4, 13, 12), {}


CASES = [
    "crnn",
    "squeezed_crnn",
    "diacritizer",
    "language_id",
    "vad",
    "deepspeech",
    "demucs_blstm",
]


@pytest.mark.parametrize("name", CASES)
def test_real_models_convert_and_match_the_module(name: str) -> None:
    module, x, options = _case(name)
    initial = {key: value.clone() for key, value in module.state_dict().items()}
    module = _trained(module, x)
    assert any(  # the weights the conversion reads are trained ones
        not torch.equal(initial[key], value) for key, value in module.state_dict().items()
    )
    model = torch_to_keras(module, **options)  # verified against module(x) as it converts
    given = {}
    if "input_shape" in options:
        # An image's height (DeepSpeech's channel axis) is fixed by no module: compare()
        # captures the module at the inputs given, here longer than the conversion saw.
        shape = (3, *(28 if size is None else size for size in options["input_shape"]))
        given["inputs"] = np.random.default_rng(0).standard_normal(shape, "float32")
    report = compare(module, against=model, frameworks=[], **given)
    assert report, "\n".join(report.lines())
    assert any("@against" in line for line in report.lines())


def test_a_crnn_in_training_mode_is_refused_by_name() -> None:
    with pytest.raises(Exception, match=r"'cnn_1' \(BatchNorm2d\) is in training mode"):
        torch_to_keras(CRNN().train(), input_shape=(1, 16, None), verify=False)
