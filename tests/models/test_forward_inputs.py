"""torch modules whose ``forward`` takes several data inputs, as encoder–decoders do:
captured on each input, ported with one Keras input per ``forward`` input. Expected values
are the module's own ``forward`` run by torch."""

from __future__ import annotations

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
from xframe_bilstm.models.forward_inputs import input_names  # noqa: E402
from xframe_bilstm.models.input_guesses import input_guesses  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn, F = torch.nn, torch.nn.functional
RNG = np.random.default_rng(0)
SOURCE, TARGET = RNG.integers(0, 11, size=(3, 7)), RNG.integers(0, 9, size=(3, 5))


class Seq2Seq(nn.Module):
    """An LSTM encoder's final (h, c) start an LSTM decoder on the target ids (teacher
    forcing); the target vocabulary is the smaller, so example ids must fit both."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.src_embedding, self.tgt_embedding = nn.Embedding(11, 6), nn.Embedding(9, 6)
        self.encoder = nn.LSTM(6, 8, num_layers=2, batch_first=True)
        self.decoder = nn.LSTM(6, 8, num_layers=2, batch_first=True)
        self.out = nn.Linear(8, 9)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        _, (h, c) = self.encoder(self.src_embedding(src))
        y, _ = self.decoder(self.tgt_embedding(tgt), (h, c))
        return self.out(y)


class AttentionSeq2Seq(nn.Module):
    """A bidirectional GRU encoder, its final states bridged into a GRU decoder, and dot
    attention over the encoder's outputs written in ``forward``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.src_embedding, self.tgt_embedding = nn.Embedding(11, 6), nn.Embedding(9, 6)
        self.encoder = nn.GRU(6, 8, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(16, 8)
        self.decoder = nn.GRU(6, 8, batch_first=True)
        self.key = nn.Linear(16, 8)
        self.out = nn.Linear(24, 9)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        memory, h_n = self.encoder(self.src_embedding(src))
        h0 = torch.tanh(self.bridge(torch.cat([h_n[0], h_n[1]], dim=-1))).unsqueeze(0)
        y, _ = self.decoder(self.tgt_embedding(tgt), h0)
        weights = F.softmax(torch.bmm(y, self.key(memory).transpose(1, 2)), dim=-1)
        context = torch.bmm(weights, memory)
        return F.log_softmax(self.out(torch.cat([y, context], dim=-1)), dim=-1)


class SequenceAndFeatures(nn.Module):
    """A sequence's last h beside per-row features: no module reads the features alone."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.lstm = nn.LSTM(5, 8, batch_first=True)
        self.head = nn.Linear(8 + 3, 2)

    def forward(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(x)
        return self.head(torch.cat([h[-1], features], dim=-1))


class PackedEncoderDecoder(nn.Module):
    """fairseq's order, ``forward(src_tokens, src_lengths, prev_output_tokens)``: the source
    packed by its lengths into a BiLSTM, whose final states, both directions summed, start
    the decoder."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.src_embedding, self.tgt_embedding = nn.Embedding(11, 6), nn.Embedding(9, 6)
        self.encoder = nn.LSTM(6, 8, batch_first=True, bidirectional=True)
        self.decoder = nn.LSTM(6, 8, batch_first=True)
        self.out = nn.Linear(8, 9)

    def forward(self, src_tokens, src_lengths, prev_output_tokens):
        packed = nn.utils.rnn.pack_padded_sequence(
            self.src_embedding(src_tokens),
            src_lengths.cpu(),
            batch_first=True,
            enforce_sorted=False,
        )
        _, (h, c) = self.encoder(packed)
        states = (h[0:1] + h[1:2], c[0:1] + c[1:2])
        y, _ = self.decoder(self.tgt_embedding(prev_output_tokens), states)
        return self.out(y)


class Listener(nn.Module):
    """Two convolution blocks over (B, C, T) features, then a BiLSTM."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            nn.Conv1d(5, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU(),
            nn.Conv1d(8, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU(),
        )  # fmt: skip
        self.lstm = nn.LSTM(8, 6, batch_first=True, bidirectional=True)

    def forward(self, features: torch.Tensor):
        return self.lstm(self.blocks(features).transpose(1, 2))


class ListenSpell(nn.Module):
    """A speech encoder–decoder, each part a module of its own: the decoder's Embedding is
    declared after every module of the encoder, and starts from its summed final states."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.listener = Listener()
        self.speller = nn.ModuleDict(
            {"embedding": nn.Embedding(9, 4), "lstm": nn.LSTM(4, 6, batch_first=True)}
        )
        self.out = nn.Linear(6, 9)

    def forward(self, features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        _, (h, c) = self.listener(features)
        states = (h.sum(0, keepdim=True), c.sum(0, keepdim=True))
        y, _ = self.speller["lstm"](self.speller["embedding"](tokens), states)
        return self.out(y)


class ThreeInputs(nn.Module):
    """Word, tag and position ids embedded and summed into one BiLSTM."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.words, self.tags, self.places = (nn.Embedding(n, 4) for n in (7, 5, 9))
        self.lstm = nn.LSTM(4, 6, batch_first=True, bidirectional=True)
        self.out = nn.Linear(12, 3)

    def forward(self, words: torch.Tensor, tags: torch.Tensor, places: torch.Tensor):
        y, _ = self.lstm(self.words(words) + self.tags(tags) + self.places(places))
        return self.out(y)


def _torch(module: nn.Module, *inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module.eval()(*(torch.as_tensor(x) for x in inputs)).numpy()


def test_an_encoder_decoder_ports_with_one_keras_input_per_forward_input() -> None:
    module = Seq2Seq()
    model = torch_to_keras(module)
    assert [tensor.name for tensor in model.inputs] == ["src", "tgt"]
    assert [tuple(tensor.shape) for tensor in model.inputs] == [(None, None), (None, None)]
    expected = _torch(module, SOURCE, TARGET)  # 7 source steps, 5 target steps
    np.testing.assert_allclose(model([SOURCE, TARGET]).numpy(), expected, atol=1e-5)
    longer = RNG.integers(0, 9, size=(2, 12))  # other lengths than either capture's
    np.testing.assert_allclose(
        model([SOURCE[:2], longer]).numpy(), _torch(module, SOURCE[:2], longer), atol=1e-5
    )


def test_an_attention_encoder_decoder_agrees_on_every_framework() -> None:
    report = assert_agrees_everywhere(AttentionSeq2Seq(), inputs=[SOURCE, TARGET])
    assert report.header()[1].startswith("inputs src (3, 7), tgt (3, 5), seed 0")
    assert report.to_dict()["inputs"] == {"src": [3, 7], "tgt": [3, 5]}


def test_an_encoder_decoder_port_comes_back_to_torch_computing_the_original() -> None:
    module = Seq2Seq()
    back = keras_to_torch(torch_to_keras(module))
    with torch.no_grad():
        got = back(torch.as_tensor(SOURCE), torch.as_tensor(TARGET)).numpy()
    np.testing.assert_allclose(got, _torch(module, SOURCE, TARGET), atol=1e-5)


def test_each_input_is_guessed_from_the_first_module_of_its_part() -> None:
    module = ListenSpell().eval()
    model = torch_to_keras(module)  # checked against module(features, tokens)
    assert [tuple(tensor.shape) for tensor in model.inputs] == [(None, 5, None), (None, None)]
    features = RNG.standard_normal((2, 5, 11)).astype("float32")
    expected = _torch(module, features, TARGET[:2])
    np.testing.assert_allclose(model([features, TARGET[:2]]).numpy(), expected, atol=1e-5)


def test_three_inputs_are_each_captured() -> None:
    module = ThreeInputs()
    ids = [RNG.integers(0, 5, size=(2, 6)) for _ in range(3)]
    model = torch_to_keras(module)
    assert [tensor.name for tensor in model.inputs] == ["words", "tags", "places"]
    np.testing.assert_allclose(model(ids).numpy(), _torch(module, *ids), atol=1e-5)


def test_lengths_between_data_inputs_mask_the_source_they_pack() -> None:
    module = PackedEncoderDecoder()
    assert graph_from_torch(module).name == "packedencoderdecoder"  # named after the class
    model = torch_to_keras(module)  # checked against module(src, lengths, tgt)
    assert [tensor.name for tensor in model.inputs] == [
        "src_tokens",
        "src_lengths",
        "prev_output_tokens",
    ]
    lengths = np.array([7, 3, 5])  # padded source steps change nothing
    padded = np.where(np.arange(7) < lengths[:, None], SOURCE, 0)
    expected = _torch(module, SOURCE, lengths, TARGET)
    np.testing.assert_allclose(_torch(module, padded, lengths, TARGET), expected, atol=1e-6)
    np.testing.assert_allclose(model([padded, lengths, TARGET]).numpy(), expected, atol=1e-5)
    assert_agrees_everywhere(module, inputs=[SOURCE, lengths, TARGET])


def test_inputs_no_module_reads_alone_take_the_shapes_given() -> None:
    module = SequenceAndFeatures()
    x = RNG.standard_normal((3, 6, 5)).astype("float32")
    features = RNG.standard_normal((3, 3)).astype("float32")
    model = torch_to_keras(module, input_shape=[(None, 5), (3,)])
    assert [tuple(tensor.shape) for tensor in model.inputs] == [(None, None, 5), (None, 3)]
    np.testing.assert_allclose(model([x, features]).numpy(), _torch(module, x, features), atol=1e-5)
    report = compare(module, inputs=[x, features])  # the shapes of the inputs given
    assert report, report.lines()
    with pytest.raises(
        UnsupportedFeatureError, match=r"forward takes 2 inputs \(x, features\).*input_shape=\["
    ):
        torch_to_keras(module)  # guessed from the Linear: 11 features, not 3


def test_a_forward_of_data_and_lengths_still_takes_lengths_first() -> None:
    module = Seq2Seq()
    guesses = input_guesses(module)
    assert input_names(module) == ["src", "tgt"]
    kinds = [(len(guess.options), guess.lengths_at) for guess in guesses]
    assert kinds[0] == (1, (1,))
    assert (2, ()) in kinds


@pytest.mark.parametrize(
    ("module", "input_shape", "message"),
    [
        (Seq2Seq(), [(None,), 7], "one shape per input"),
        (nn.Sequential(nn.Linear(3, 2)), [(3,), (3,)], "takes one input"),
    ],
)
def test_input_shapes_of_another_count_are_refused(
    module: nn.Module, input_shape: list, message: str
) -> None:
    with pytest.raises(UnsupportedFeatureError, match=message):
        torch_to_keras(module, input_shape=input_shape)
