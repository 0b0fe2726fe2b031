"""Time-major code in a ``forward``, as torch's defaults make people write it: a transpose
into an ``nn.LSTM``/``nn.GRU`` with ``batch_first=False``, ``out[-1]``, pooling over axis
0, a Linear on (time, batch, features), a CRNN's ``permute(2, 0, 1)`` and
``view(T * b, h)``, and ``nn.MultiheadAttention`` with its default layout.

Expected values come from the module itself, ``module(x)``, run by torch.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, keras_to_torch, torch_to_keras  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from ..tutorial_models import NamesClassifier  # noqa: E402
from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn
F = torch.nn.functional


class LastStep(nn.Module):
    """The tutorials' classifier: transpose, a 2-layer BiLSTM, ``out[-1]``, a Linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(41)
        self.lstm = nn.LSTM(4, 5, num_layers=2, bidirectional=True)
        self.fc = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.transpose(0, 1))
        return self.fc(out[-1])


class Pooled(nn.Module):
    """Modules and functions over the last axis of time-major tensors, then pooling over
    time (axis 0) and a softmax over it, transposed back."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(42)
        self.gru = nn.GRU(4, 5, bidirectional=True)
        self.norm = nn.LayerNorm(10)
        self.fc = nn.Linear(10, 6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self.gru(x.permute(1, 0, 2))
        out = torch.relu(self.fc(self.norm(out))) * 0.5 + out[..., :6]
        pooled = out.mean(0) + torch.max(out, dim=0)[0] - out.sum(dim=0, keepdim=True)[0]
        return pooled, F.softmax(out, dim=0).transpose(0, 1)


class CRNN(nn.Module):
    """crnn.pytorch's layout: a convolution over (B, C, W), ``permute(2, 0, 1)`` to
    (W, B, C), a BiLSTM, ``view(T * b, h)`` into a Linear and back, log-softmax."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(43)
        self.conv = nn.Conv1d(4, 6, 3, padding=1)
        self.rnn = nn.LSTM(6, 5, bidirectional=True)
        self.embedding = nn.Linear(10, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = torch.relu(self.conv(x)).permute(2, 0, 1)  # [w, b, c]
        recurrent, _ = self.rnn(conv)
        steps, batch, hidden = recurrent.size()
        output = self.embedding(recurrent.view(steps * batch, hidden)).view(steps, batch, -1)
        return F.log_softmax(output, dim=2).transpose(0, 1)


class Stacked(nn.Module):
    """Two GRUs, time-major throughout: a residual, ``cat`` over features, slices over
    time, and the last layer's final state."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(44)
        self.first = nn.GRU(4, 5)
        self.second = nn.GRU(5, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h1, _ = self.first(x.transpose(0, 1))
        h2, state = self.second(torch.tanh(h1) * 0.5 + h1)
        both = torch.cat([h1, h2], dim=2)
        return both[-1], both[:3].sum(0), state.squeeze(0), h2[1:].transpose(0, 1)


class Attended(nn.Module):
    """``nn.MultiheadAttention`` as built by default, over an LSTM's time-major output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(45)
        self.lstm = nn.LSTM(4, 8)
        self.attention = nn.MultiheadAttention(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x.transpose(0, 1))
        attended, _ = self.attention(h, h, h, need_weights=False)
        return (attended + h).mean(0)


class CrossAttended(nn.Module):
    """The default-layout ``nn.MultiheadAttention`` without biases, its query from one
    recurrent module and its keys and values from another."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(46)
        self.lstm = nn.LSTM(4, 8)
        self.gru = nn.GRU(4, 8)
        self.attention = nn.MultiheadAttention(8, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.transpose(0, 1)
        query, memory = self.lstm(steps)[0], self.gru(steps)[0]
        return self.attention(query, memory, memory)[0].transpose(0, 1)


class TimeMajorOutput(CRNN):
    """crnn.pytorch's result: log-probabilities (T, B, classes), as CTC losses read them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        recurrent, _ = self.rnn(self.conv(x).permute(2, 0, 1))
        return F.log_softmax(self.embedding(recurrent), dim=2)


class EncoderStates(nn.Module):
    """An encoder returning its outputs and its final states stacked, (layers * directions,
    B, H), as torch returns ``h_n``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(45)
        self.lstm = nn.LSTM(4, 5, num_layers=2, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, (h, _) = self.lstm(x)
        return out, h


MODULES = [LastStep, Pooled, CRNN, Stacked, Attended, CrossAttended, TimeMajorOutput]
MODULES += [EncoderStates]


def _input(module: nn.Module, batch: int, steps: int) -> np.ndarray:
    shape = (batch, 4, steps) if isinstance(module, CRNN) else (batch, steps, 4)
    return np.random.default_rng(9).standard_normal(shape).astype("float32")


def _expected(module: nn.Module, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        outputs = module(torch.from_numpy(x))
    return [y.numpy() for y in (outputs if isinstance(outputs, tuple) else (outputs,))]


@pytest.mark.parametrize("make", MODULES)
def test_the_keras_port_matches_the_module(make) -> None:
    module = make().eval()
    model = torch_to_keras(module)  # verified against module(x)
    x = _input(module, 4, 11)  # and at another batch and length here
    actual = model(x, training=False)
    actual = actual if isinstance(actual, (list, tuple)) else [actual]
    for mine, theirs in zip(actual, _expected(module, x), strict=True):
        np.testing.assert_allclose(np.asarray(mine), theirs, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("make", MODULES)
def test_compare_passes_on_every_framework(make) -> None:
    assert_agrees_everywhere(make().eval(), steps=8)


def test_swapping_time_and_batch_computes_nothing() -> None:
    graph = graph_from_torch(LastStep().eval())
    assert [r.kind for r in graph.layers] == ["input", "recurrent", "recurrent", "slice", "dense"]
    step = graph.layers[3].options
    assert (step["axis"], step["start"], step["keep_axis"]) == (1, -1, False)  # out[-1]


def test_the_crnn_reads_its_permute_on_the_batch_major_axes() -> None:
    graph = graph_from_torch(CRNN().eval())
    (permute,) = [r for r in graph.layers if r.kind == "permute"]
    assert permute.options["dims"] == (2, 1)  # (B, C, W) -> (B, W, C)
    assert not any(r.kind == "reshape" for r in graph.layers)  # view(T * b, h) and back


def test_a_time_major_result_is_returned_time_major() -> None:
    module = TimeMajorOutput().eval()
    graph = graph_from_torch(module)
    assert graph.layer(graph.outputs[0]).kind == "time_first"
    assert torch_to_keras(module).output_shape == (None, None, 7)  # (time, batch, classes)
    report = assert_agrees_everywhere(module, steps=8, batch=3)
    (profiled, *_) = [pair.timesteps for pair in report.pairs if pair.timesteps]
    assert [len(steps) for steps in profiled.values()] == [8]  # per step, not per row


@pytest.mark.parametrize("make", [CRNN, TimeMajorOutput])
def test_the_saved_keras_port_ports_back_to_torch(tmp_path, make) -> None:
    module = make().eval()
    path = tmp_path / "crnn.keras"
    torch_to_keras(module).save(path)
    port = keras_to_torch(path)  # verified against the model Keras loads
    x = _input(module, 2, 10)
    with torch.no_grad():
        actual = port(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(actual, _expected(module, x)[0], rtol=1e-5, atol=2e-6)


class TimeMajorInput(nn.Module):
    """Frames given time-major, (time, batch, features), as torch's default layout has
    them: a projection of each step, an LSTM, the last step."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(43)
        self.project = nn.Linear(4, 6)
        self.lstm = nn.LSTM(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(torch.tanh(self.project(x)))[0][-1]


class TimeMajorTagger(nn.Module):
    """Token ids in and tags out time-major, (time, batch) to (time, batch, tags)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(44)
        self.embedding = nn.Embedding(20, 6)
        self.lstm = nn.LSTM(6, 5, bidirectional=True)
        self.tags = nn.Linear(10, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.tags(self.lstm(self.embedding(ids))[0])


def _time_major(module: nn.Module, steps: int, batch: int) -> np.ndarray:
    rng = np.random.default_rng(8)
    if isinstance(module, TimeMajorTagger):
        return rng.integers(1, 20, (steps, batch))
    return rng.standard_normal((steps, batch, 4)).astype("float32")


@pytest.mark.parametrize("make", [TimeMajorInput, TimeMajorTagger, NamesClassifier])
def test_a_time_major_input_is_taken_time_major(tmp_path, make) -> None:
    torch.manual_seed(45)
    module = make().eval()
    graph = graph_from_torch(module)
    assert graph.time_major("input") and graph.layers[1].kind == "time_first"
    model = torch_to_keras(module)  # verified against module(x) on time-major inputs
    x = _time_major(module, 11, 2)  # and at another length and batch here
    np.testing.assert_allclose(np.asarray(model(x)), _expected(module, x)[0], rtol=1e-5, atol=2e-6)
    assert_agrees_everywhere(module, steps=8, batch=3)  # the ONNX export's too
    model.save(tmp_path / "port.keras")
    back = keras_to_torch(tmp_path / "port.keras")
    with torch.no_grad():
        actual = back(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(actual, _expected(module, x)[0], rtol=1e-5, atol=2e-6)


class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 5)
        self.after = nn.LSTM(5, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self.lstm(x.transpose(0, 1))
        return out.reshape(out.size(1), -1), self.after(out)[0].transpose(0, 1)


class BatchFirstAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 8)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x.transpose(0, 1))
        return self.attention(h, h, h, need_weights=False)[0].transpose(0, 1)


@pytest.mark.parametrize(
    ("make", "refusals"),
    [
        (
            Mixed,
            [
                "mixing the time and batch axes of a time-major tensor",
                "passes a time-major tensor (time, batch, ...) to 'after' (LSTM, batch_first=True)",
            ],
        ),
        (BatchFirstAttention, ["batch_first=True on tensors that are not batch-major"]),
    ],
)
def test_what_moves_the_batch_axis_is_refused_by_name(make, refusals) -> None:
    with pytest.raises(UnsupportedFeatureError) as refused:
        torch_to_keras(make().eval())
    for refusal in refusals:
        assert refusal in str(refused.value)


class FixedPositions(nn.Module):
    """A positional table of one length, time-major, (time, 1, features), added to the
    time-major embeddings: as a model of fixed-length inputs (or its ONNX export at one
    length) holds ``pe[:T]``."""

    def __init__(self, steps: int = 9) -> None:
        super().__init__()
        torch.manual_seed(43)
        self.embedding = nn.Embedding(20, 6)
        self.register_buffer("positions", torch.randn(steps, 1, 6))
        self.lstm = nn.LSTM(6, 5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(ids).transpose(0, 1) + self.positions)
        return out.transpose(0, 1)


def test_a_time_major_table_of_the_fixed_length_is_held_batch_major() -> None:
    module = FixedPositions().eval()
    graph = graph_from_torch(module, input_shape=(9,))
    (held,) = [r for r in graph.layers if r.kind == "weight_op"]
    np.testing.assert_array_equal(
        held.weights["value"], module.positions.numpy().transpose(1, 0, 2)
    )
    ids = np.random.default_rng(0).integers(0, 20, (4, 9))
    with torch.no_grad():
        expected = module(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(torch_to_keras(module, input_shape=(9,))(ids), expected, atol=2e-6)


def test_a_time_major_table_of_one_length_is_refused_where_the_length_varies() -> None:
    """At a free length the table does not fit the steps: refused, not cut or guessed."""
    with pytest.raises(UnsupportedFeatureError, match=r"input_shape=\(None,\) does not fit"):
        graph_from_torch(FixedPositions().eval(), input_shape=(None,))
