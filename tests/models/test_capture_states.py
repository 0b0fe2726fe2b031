"""torch modules whose forward uses its recurrent module's final states, ``h_n[k]``: read as
the Keras layers' ``return_state`` outputs. Expected values are ``module(x)``, run by torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import (  # noqa: E402
    UnsupportedFeatureError,
    compare,
    keras_to_torch,
    torch_to_keras,
)
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from ..tutorial_models import (  # noqa: E402
    CharacterLSTM,
    ChatbotAttentionDecoder,
    Seq2SeqDecoder,
    WordLanguageModel,
)

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn


class FinalStates(nn.Module):
    """A classifier of the last layer's final h (both directions), plus its c for an LSTM."""

    def __init__(self, mode: str, num_layers: int, bidirectional: bool) -> None:
        super().__init__()
        torch.manual_seed(num_layers)
        rnn = getattr(nn, mode)
        self.rnn = rnn(3, 4, num_layers=num_layers, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(8 if bidirectional else 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, states = self.rnn(x)
        lstm = isinstance(self.rnn, nn.LSTM)
        h = states[0] if lstm else states
        features = torch.cat([h[-2], h[-1]], dim=1) if self.rnn.bidirectional else h[-1]
        if lstm:  # the first layer's cell states too: c_n[0] (and c_n[1])
            c = states[1]
            first = torch.cat([c[0], c[1]], dim=1) if self.rnn.bidirectional else c[0]
            features = features + 0.5 * first
        return self.fc(features)


class Squeezed(nn.Module):
    """``h_n.squeeze(0)`` of a one-layer GRU, the output sequence unused."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.gru = nn.GRU(3, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[1].squeeze(0) * 2.0


class Flattened(nn.Module):
    """The stacked states used whole: (layers * directions, B, H) moved and flattened,
    and averaged over the entries."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 4, num_layers=2, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.gru(x)[1]
        return self.fc(h.transpose(0, 1).reshape(x.shape[0], -1)), h.mean(0)


class BidirectionalFlattened(nn.Module):
    """A time-major bidirectional LSTM's final h and c, every entry, flattened in torch's
    stacking order."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, (h, c) = self.lstm(x.transpose(0, 1))
        return h.permute(1, 0, 2).flatten(1), c.transpose(0, 1)[:, 1:].sum(1)


CASES = [
    pytest.param(("LSTM", 1, False), id="lstm"),
    pytest.param(("GRU", 1, False), id="gru"),
    pytest.param(("LSTM", 2, True), id="bilstm-2-layers"),
    pytest.param(("GRU", 3, True), id="bigru-3-layers"),
    pytest.param(("RNN", 2, False), id="rnn-2-layers"),
]


def _x(batch: int = 4, steps: int = 9) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((batch, steps, 3)).astype("float32")


def _expected(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.as_tensor(x)).numpy()


@pytest.mark.parametrize("case", CASES)
def test_the_keras_port_returns_each_used_state_of_its_layer(case, tmp_path: Path) -> None:
    mode, num_layers, bidirectional = case
    module = FinalStates(mode, num_layers, bidirectional).eval()
    model = torch_to_keras(module)  # verified against module(x)
    x = _x()
    np.testing.assert_allclose(np.asarray(model(x)), _expected(module, x), rtol=0, atol=2e-5)
    graph = graph_from_torch(module)
    last = graph.layer(f"rnn_{num_layers - 1}" if num_layers > 1 else "rnn")
    assert last.options["return_state"]
    per_direction = 2 if mode == "LSTM" else 1
    assert len(last.outputs) == 1 + per_direction * (2 if bidirectional else 1)
    # and back: the saved Keras model ports to torch and converts back again
    path = tmp_path / "states.keras"
    model.save(path)
    back = torch_to_keras(keras_to_torch(path))
    np.testing.assert_allclose(np.asarray(back(x)), _expected(module, x), rtol=0, atol=2e-5)


def test_layer_and_direction_follow_torch_stacking() -> None:
    """h_n[2*l + d]: layer l's record, output 1 + d*S + s (Keras order h, c per direction)."""
    graph = graph_from_torch(FinalStates("LSTM", 2, True).eval())
    readers = {record.name: record.inputs for record in graph.layers}
    # cat([h[-2], h[-1]]): layer 1 forward h, layer 1 backward h; c[0], c[1]: layer 0 c.
    assert ("rnn_1:1", "rnn_1:3") in readers.values()
    assert ("rnn:2", "rnn:4") in readers.values()
    assert graph.layer("rnn").options["return_state"]


def test_compare_passes_on_every_framework() -> None:
    report = compare(
        FinalStates("LSTM", 2, True).eval(), frameworks=["torch", "keras", "onnxruntime"], steps=8
    )
    assert report, report.lines()


def test_the_squeezed_state_of_a_one_layer_module() -> None:
    module = Squeezed().eval()
    model = torch_to_keras(module)
    x = _x(batch=3, steps=6)
    np.testing.assert_allclose(np.asarray(model(x)), _expected(module, x), rtol=0, atol=2e-5)


@pytest.mark.parametrize("make", [Flattened, BidirectionalFlattened])
def test_the_stacked_states_used_whole_are_read_in_torch_order(make) -> None:
    module = make().eval()
    model = torch_to_keras(module)  # verified against module(x)
    x = _x(batch=3, steps=6)
    with torch.no_grad():
        expected = [y.numpy() for y in module(torch.as_tensor(x))]
    for mine, theirs in zip(model(x), expected, strict=True):
        np.testing.assert_allclose(np.asarray(mine), theirs, rtol=0, atol=2e-5)
    assert compare(module, frameworks=["torch", "keras", "onnxruntime"], steps=7)


class SequenceAndStates(nn.Module):
    """``return out, (h_n[-1], c_n[-1])``: the sequence and the last layer's backward states."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(11)
        self.lstm = nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, (h, c) = self.lstm(x)
        return out, (h[-1], c[-1])


class ReturnsItsLSTM(nn.Module):
    """``return self.lstm(x)``: h_n and c_n returned as torch stacks them, (1, B, H)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        return self.lstm(x)


def _ported_outputs(module: nn.Module) -> list[np.ndarray]:
    """The Keras port's outputs (out, h, c) on one input, each checked against the
    module's; compare() passes on torch, Keras and onnxruntime."""
    model = torch_to_keras(module)  # verified against module(x), output by output
    x = _x(batch=3, steps=5)
    with torch.no_grad():
        out, (h, c) = module(torch.as_tensor(x))
    actual = [np.asarray(got) for got in model(x)]
    for got, want in zip(actual, (out, h, c), strict=True):
        np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=2e-5)
    report = compare(module, frameworks=["torch", "keras", "onnxruntime"], steps=6)
    assert report, report.lines()
    return actual


def test_returned_states_are_the_layers_state_outputs() -> None:
    module = SequenceAndStates().eval()
    _ported_outputs(module)
    # h_n[-1], c_n[-1]: layer 1's backward h and c, Keras outputs 3 and 4 of its record.
    assert graph_from_torch(module).outputs == ("lstm_1", "lstm_1:3", "lstm_1:4")


def test_the_stacked_states_are_returned_as_torch_stacks_them() -> None:
    actual = _ported_outputs(ReturnsItsLSTM().eval())
    assert [got.shape for got in actual] == [(3, 5, 4), (1, 3, 4), (1, 3, 4)]


class OutputAndWholeStates(nn.Module):
    """The sequence output and the final states used whole (flattened per row), both."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(62)
        self.gru = nn.GRU(3, 4, num_layers=2, batch_first=True)
        self.fc, self.summary = nn.Linear(4, 2), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, h = self.gru(x)
        whole = h.transpose(0, 1).reshape(x.size(0), -1)
        return self.fc(out) + self.summary(whole)[:, None]


def test_the_output_beside_states_used_whole_is_the_output() -> None:
    module = OutputAndWholeStates().eval()
    model = torch_to_keras(module)  # verified against module(x)
    x = _x(batch=3, steps=5)
    with torch.no_grad():
        expected = module(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=0, atol=2e-5)


class EncoderDecoder(nn.Module):
    """A 2-layer BiLSTM encoder's final states starting a decoder of the same shape, as an
    LSTM autoencoder does."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(61)
        self.encoder = nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)
        self.decoder = nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, c) = self.encoder(x)
        out, _ = self.decoder(torch.tanh(x), (h, c))
        return self.fc(out)


class Conditioned(nn.Module):
    """A GRU (time-major) started from a state computed from its input, as a captioner
    starts its decoder from image features; the Linear it calls first reads (B, D)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(62)
        self.project = nn.Linear(3, 5)
        self.gru = nn.GRU(3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = torch.tanh(self.project(x.mean(1))).unsqueeze(0)
        out, h = self.gru(x.transpose(0, 1), h0)
        return out[-1] + h[0]


@pytest.mark.parametrize("make", [EncoderDecoder, Conditioned])
def test_initial_states_passed_in_forward_start_the_keras_layers(make, tmp_path: Path) -> None:
    module = make().eval()
    model = torch_to_keras(module)  # verified against module(x)
    x = _x(batch=3, steps=7)
    np.testing.assert_allclose(np.asarray(model(x)), _expected(module, x), rtol=0, atol=2e-5)
    assert compare(module, frameworks=["torch", "keras", "onnxruntime"], steps=6)
    path = tmp_path / "started.keras"
    model.save(path)
    with torch.no_grad():
        back = keras_to_torch(path)(torch.as_tensor(x)).numpy()  # verified against Keras
    np.testing.assert_allclose(back, _expected(module, x), rtol=0, atol=2e-5)


def test_each_layer_reads_its_entries_of_the_initial_states_in_keras_order() -> None:
    graph = graph_from_torch(EncoderDecoder().eval())
    decoder = [record for record in graph.layers if record.name.startswith("decoder")]
    entries = [
        [graph.layer(name).options["start"] for name in record.inputs[1:]]
        for record in decoder
        if record.kind == "recurrent"
    ]
    assert entries == [[0, 0, 1, 1], [2, 2, 3, 3]]  # (h, c) forward, then backward


def test_a_decoder_step_takes_the_states_as_torch_stacks_them(tmp_path: Path) -> None:
    torch.manual_seed(63)
    module = Seq2SeqDecoder().eval()
    graph = graph_from_torch(module)
    assert graph.inputs == ("input", "hidden", "cell")
    assert graph.time_major("hidden") and graph.layer("hidden").options["shape"] == (2, 5)
    model = torch_to_keras(module)  # checked against module(input, hidden, cell)
    rng = np.random.default_rng(4)
    arrays = [rng.integers(0, 20, 3), *rng.standard_normal((2, 2, 3, 5)).astype("float32")]
    with torch.no_grad():
        expected = [t.numpy() for t in module(*map(torch.as_tensor, arrays))]
    for mine, theirs in zip(model(arrays), expected, strict=True):
        np.testing.assert_allclose(np.asarray(mine), theirs, rtol=0, atol=2e-5)
    assert compare(module, frameworks=["torch", "keras", "onnxruntime"])
    path = tmp_path / "step.keras"
    model.save(path)
    back = keras_to_torch(path)  # the states' layers read back from the saved inputs
    with torch.no_grad():
        for mine, theirs in zip(back(*map(torch.as_tensor, arrays)), expected, strict=True):
            np.testing.assert_allclose(mine.numpy(), theirs, rtol=0, atol=2e-5)


def test_shapes_given_with_the_batch_axis_second_are_taken_so() -> None:
    torch.manual_seed(64)
    module = ChatbotAttentionDecoder().eval()
    shapes = [(1, "batch"), (2, "batch", 6), (None, "batch", 6)]
    model = torch_to_keras(module, input_shape=shapes)  # checked against module(...)
    assert [tuple(t.shape) for t in model.inputs] == [(1, None), (2, None, 6), (None, None, 6)]
    rng = np.random.default_rng(5)
    arrays = [
        rng.integers(0, 20, (1, 3)),
        *(rng.standard_normal(shape).astype("float32") for shape in ((2, 3, 6), (8, 3, 6))),
    ]
    with torch.no_grad():
        expected = [t.numpy() for t in module(*map(torch.as_tensor, arrays))]
    for mine, theirs in zip(model(arrays), expected, strict=True):
        np.testing.assert_allclose(np.asarray(mine), theirs, rtol=0, atol=2e-5)
    # compare finds the batch axis where the arrays share it: the second of (1, 3), (2, 3, 6)...
    assert compare(module, inputs=arrays, frameworks=["torch", "keras", "onnxruntime"])
    with pytest.raises(UnsupportedFeatureError, match="the batch axis is read first, or second"):
        torch_to_keras(module, input_shape=[("batch", 1), (2, "batch", 6), (None, "batch", 6)])


@pytest.mark.parametrize("make", [WordLanguageModel, CharacterLSTM])
def test_an_lstms_states_given_as_one_tuple_are_two_inputs(make, tmp_path: Path) -> None:
    """pytorch/examples' word language model and the character LSTM notebooks take the
    LSTM's (h, c) as one argument, and return their steps merged for the loss."""
    torch.manual_seed(73)
    module = make().eval()
    graph = graph_from_torch(module)
    assert graph.inputs[1:] == ("hidden_0", "hidden_1") and graph.arguments == (1, 2)
    model = torch_to_keras(module)  # checked against module(x, (h, c))
    rng = np.random.default_rng(6)
    x = (
        rng.integers(0, 50, (9, 3))  # (time, batch) ids
        if isinstance(module, WordLanguageModel)
        else rng.standard_normal((3, 9, 12)).astype("float32")  # (batch, time, tokens)
    )
    h, c = rng.standard_normal((2, 2, 3, 16)).astype("float32")
    with torch.no_grad():
        scores, (h_n, c_n) = module(torch.as_tensor(x), (torch.as_tensor(h), torch.as_tensor(c)))
    for mine, theirs in zip(model([x, h, c]), (scores, h_n, c_n), strict=True):
        np.testing.assert_allclose(np.asarray(mine), theirs.numpy(), rtol=0, atol=2e-5)
    report = compare(module, frameworks=["torch", "keras", "onnxruntime"])
    assert report, report.lines()
    assert "torch[cpu,float32]@original" in {pair.expected for pair in report.pairs}
