"""torch_to_keras of modules whose forward torch.export refuses and torch.fx traces.

Expected values come from the module itself, ``module(x)``, run by torch; that
torch.export refuses each module is checked with torch.export itself.
"""

from __future__ import annotations

import collections
import inspect
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, compare, torch_to_keras  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn


class CheckedTagger(nn.Module):
    """Token ids to tags, checking the ids against the vocabulary as torchvision checks."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.emb = nn.Embedding(30, 6)
        self.lstm = nn.LSTM(6, 8, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(16, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        torch._assert(((ids >= 0) & (ids < self.emb.num_embeddings)).all(), "id out of range")
        return self.fc(torch.relu(self.lstm(self.emb(ids))[0]))


class PlottedAttention(nn.Module):
    """Self-attention over a GRU's outputs, keeping the weights as numpy for plotting."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.gru = nn.GRU(5, 6, batch_first=True)
        self.fc = nn.Linear(6, 3)
        self.attention: np.ndarray | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.gru(x)[0]
        weights = torch.softmax(out @ out.transpose(1, 2) / math.sqrt(6), dim=-1)
        self.attention = weights.detach().cpu().numpy()
        return self.fc((weights @ out)[:, -1])


class MonitoredCRNN(nn.Module):
    """A CRNN keeping each batch's mean features in a deque, to watch for drift."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d((7, 2)))
        self.rnn = nn.LSTM(4, 5, batch_first=True)
        self.fc = nn.Linear(5, 3)
        self.recent: collections.deque[np.ndarray] = collections.deque(maxlen=8)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.cnn(images).squeeze(2).permute(0, 2, 1)
        self.recent.append(features.mean(dim=(0, 1)).cpu().numpy())
        return self.fc(self.rnn(features)[0])


class Gated(nn.Module):
    """Branches on the values of a tensor: neither capture can follow that."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lstm(x)[0]
        if out.sum() > 0:
            out = torch.relu(out)
        return out


class CheckedCumsum(CheckedTagger):
    """A checked forward with an operation no Keras layer computes."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        torch._assert((ids >= 0).all(), "negative id")
        return torch.cumsum(self.lstm(self.emb(ids))[0], 1)


@torch.library.custom_op("xframe_bilstm_tests::clip", mutates_args=())
def _clip(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(min=0)


class CustomClip(nn.Module):
    """A custom operator with no fake kernel: torch.fx records it, neither lowers it."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _clip(self.lstm(x)[0])


class Pooled(nn.Module):
    """A forward both captures read."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.lstm(x)[0]).mean(1)


def _input(module: nn.Module) -> np.ndarray:
    rng = np.random.default_rng(0)
    if isinstance(module, CheckedTagger):
        return rng.integers(0, 30, size=(3, 9))
    if isinstance(module, MonitoredCRNN):
        return rng.standard_normal((3, 1, 7, 12)).astype("float32")
    return rng.standard_normal((3, 9, 5 if isinstance(module, PlottedAttention) else 4)).astype(
        "float32"
    )


def _line(function: object, code: str) -> str:
    """``test_capture_fx.py:N (code)``: where ``code`` is in ``function``."""
    lines, first = inspect.getsourcelines(function)
    number = first + next(index for index, line in enumerate(lines) if code in line)
    return f"test_capture_fx.py:{number} ({code}"


def _export_refuses(module: nn.Module) -> None:
    with pytest.raises(Exception):  # noqa: B017 (torch raises several kinds)
        torch.export.export(module.eval(), (torch.as_tensor(_input(module)),))


@pytest.mark.parametrize("make", [CheckedTagger, PlottedAttention, MonitoredCRNN])
def test_export_refuses_and_fx_reads(make: type[nn.Module]) -> None:
    module = make()
    _export_refuses(module)
    x = _input(module)
    model = torch_to_keras(module)
    assert model.captured_by == "torch.fx"
    with torch.no_grad():
        expected = module.eval()(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(np.asarray(model(x)), expected, atol=1e-5)
    report = compare(module)
    assert report, report.lines()


def test_tracing_leaves_the_modules_attributes_as_they_were() -> None:
    attention, monitored = PlottedAttention(), MonitoredCRNN()
    torch_to_keras(attention, verify=False)
    torch_to_keras(monitored, verify=False)
    assert attention.attention is None
    assert len(monitored.recent) == 0


def test_a_forward_both_refuse_is_refused_naming_both(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UnsupportedFeatureError) as refused:
        torch_to_keras(Gated())
    assert "def forward(" not in capsys.readouterr().err  # torch's partial graph: not shown
    message = str(refused.value)
    where = _line(Gated.forward, "if out.sum() > 0:") + ")"
    assert "torch.export could not capture Gated.forward (GuardOnDataDependentSymNode" in message
    assert "nor could torch.fx trace it (TraceError: symbolically traced" in message
    assert message.count(where) == 2, message


def test_a_trace_torch_export_cannot_lower_is_refused_naming_both() -> None:
    with pytest.raises(UnsupportedFeatureError) as refused:
        torch_to_keras(CustomClip())
    message = str(refused.value)
    where = _line(CustomClip.forward, "return _clip(self.lstm(x)[0])")
    assert "torch.export could not capture CustomClip.forward (RuntimeError: " in message
    assert f"at {where})), nor could its torch.fx trace be captured (RuntimeError: " in message
    assert message.count("no fake impl registered for <CustomOpDef(xframe_bilstm_tests::clip)") == 2


def test_operations_read_from_the_trace_are_refused_with_their_line() -> None:
    with pytest.raises(UnsupportedFeatureError) as refused:
        torch_to_keras(CheckedCumsum())
    where = _line(CheckedCumsum.forward, "return torch.cumsum(")
    assert f"applies aten.cumsum at {where}" in str(refused.value)


def test_export_is_the_first_choice() -> None:
    module = Pooled()
    model = torch_to_keras(module)
    assert model.captured_by == "torch.export"
    assert torch_to_keras(nn.Sequential(nn.LSTM(4, 5, batch_first=True))).captured_by is None
