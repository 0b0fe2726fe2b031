"""Per-word character models: a ``forward`` merging the batch and time axes to run modules
over each word's characters (``chars.view(B * T, W)``), then splitting them back. Expected
values are the module's own ``forward`` run by torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import (  # noqa: E402
    UnsupportedFeatureError,
    keras_to_torch,
    torch_to_keras,
)
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn, F = torch.nn, torch.nn.functional
RNG = np.random.default_rng(0)
WORDS, CHARS = RNG.integers(1, 40, size=(3, 7)), RNG.integers(1, 20, size=(3, 7, 6))


class CharCNNTagger(nn.Module):
    """Word embeddings beside a character CNN max-pooled over each word, a BiLSTM and a
    Linear per word: the tagger of Ma and Hovy (2016)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(91)
        self.words = nn.Embedding(40, 8)
        self.chars = nn.Embedding(20, 4)
        self.char_cnn = nn.Conv1d(4, 6, 3, padding=1)
        self.lstm = nn.LSTM(14, 10, batch_first=True, bidirectional=True)
        self.tags = nn.Linear(20, 5)

    def forward(self, words: torch.Tensor, chars: torch.Tensor) -> torch.Tensor:
        b, t, w = chars.shape
        c = self.chars(chars.view(b * t, w)).transpose(1, 2)  # (B * T, E, W)
        c = torch.relu(self.char_cnn(c)).max(dim=2)[0].view(b, t, -1)
        out, _ = self.lstm(torch.cat([self.words(words), c], dim=-1))
        return self.tags(out)


class CharOnly(nn.Module):
    """Characters alone: a LayerNorm and a functional max pooling over each word."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(92)
        self.chars = nn.Embedding(20, 4)
        self.norm = nn.LayerNorm(4)
        self.conv = nn.Conv1d(4, 6, 3)
        self.gru = nn.GRU(6, 5, batch_first=True)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        b, t, w = chars.shape
        c = self.norm(self.chars(chars.reshape(-1, w))).permute(0, 2, 1)
        c = F.max_pool1d(torch.tanh(self.conv(c)), kernel_size=w - 2).squeeze(-1)
        return self.gru(c.reshape(b, t, -1))[0]


def _torch(module: nn.Module, *inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(*(torch.as_tensor(x) for x in inputs)).numpy()


def test_a_character_cnn_runs_on_each_word() -> None:
    module = CharCNNTagger().eval()
    graph = graph_from_torch(module, input_shape=[(None,), (None, 6)])
    (conv,) = [r for r in graph.layers if r.kind == "time_distributed"]
    assert conv.options["layer"].kind == "conv"
    assert not any(r.kind == "reshape" for r in graph.layers)  # merged and split: nothing
    report = assert_agrees_everywhere(module, inputs=[WORDS, CHARS])
    assert report.header()[1].startswith("inputs words (3, 7), chars (3, 7, 6)")


def test_the_saved_port_of_a_character_cnn_ports_back(tmp_path) -> None:
    module = CharCNNTagger().eval()
    path = tmp_path / "tagger.keras"
    torch_to_keras(module, input_shape=[(None,), (None, 6)]).save(path)
    port = keras_to_torch(path)  # checked against the model Keras loads
    words, chars = RNG.integers(1, 40, size=(2, 11)), RNG.integers(1, 20, size=(2, 11, 6))
    with torch.no_grad():
        got = port(torch.as_tensor(words), torch.as_tensor(chars)).numpy()
    np.testing.assert_allclose(got, _torch(module, words, chars), atol=1e-5)


def test_normalization_and_functional_pooling_per_word() -> None:
    assert_agrees_everywhere(CharOnly().eval(), inputs=CHARS)


class CharBiLSTM(CharOnly):
    """A character BiLSTM over each word, its outputs max-pooled over the characters."""

    def __init__(self) -> None:
        super().__init__()
        self.char_lstm = nn.LSTM(4, 3, batch_first=True, bidirectional=True)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        b, t, w = chars.shape
        out, _ = self.char_lstm(self.chars(chars.view(b * t, w)))
        return self.gru(out.max(dim=1)[0].view(b, t, -1))[0]


def test_a_character_lstm_runs_on_each_word() -> None:
    module = CharBiLSTM().eval()
    graph = graph_from_torch(module, input_shape=(None, 6))
    (wrapped,) = [r for r in graph.layers if r.kind == "time_distributed"]
    assert wrapped.options["layer"].kind == "recurrent"
    assert_agrees_everywhere(module, inputs=CHARS)


class CharStates(CharBiLSTM):
    """Lample et al.'s character features: each word's BiLSTM final states, both
    directions joined (unpacked: every word runs over all its characters)."""

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        b, t, w = chars.shape
        _, (h, _) = self.char_lstm(self.chars(chars.view(b * t, w)))
        return self.gru(torch.cat([h[0], h[1]], dim=-1).view(b, t, -1))[0]


def test_the_final_states_of_a_character_lstm_are_its_ends() -> None:
    module = CharStates().eval()
    kinds = [record.kind for record in graph_from_torch(module, input_shape=(None, 6)).layers]
    assert kinds.count("time_distributed") == 1 and kinds.count("slice") == 4
    assert_agrees_everywhere(module, inputs=CHARS)


class CharLSTM(CharBiLSTM):
    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        b, t, w = chars.shape
        _, (_, c) = self.char_lstm(self.chars(chars.view(b * t, w)))
        return self.gru(torch.cat([c[0], c[1]], dim=-1).view(b, t, -1))[0]


class PackedWords(CharBiLSTM):
    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        b, t, w = chars.shape
        flat = chars.view(b * t, w)
        lengths = (flat != 0).sum(-1).clamp(min=1)  # each word's characters
        packed = nn.utils.rnn.pack_padded_sequence(
            self.chars(flat), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, (h, _) = self.char_lstm(packed)
        return self.gru(torch.cat([h[0], h[1]], -1).view(b, t, -1))[0]


class OverTheWords(CharOnly):
    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        b, t, w = chars.shape
        c = self.chars(chars.view(b * t, w)).mean(0)  # over every word of every row
        return c


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (CharLSTM, "uses the cell states of 'char_lstm' run over a tensor whose batch"),
        (OverTheWords, "applies aten.mean over the merged axis"),
        (PackedWords, "packs a sequence by lengths computed in forward for other rows"),
    ],
)
def test_what_mixes_the_words_is_refused_by_name(make, message: str) -> None:
    with pytest.raises(UnsupportedFeatureError, match=message):
        torch_to_keras(make().eval(), input_shape=(None, 6))
