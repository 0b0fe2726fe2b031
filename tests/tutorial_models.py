"""Recurrent models as PyTorch's tutorials and widely copied repositories write them, in
small, so the tests and ``benchmarks/tutorial_models.py`` port the same code. Most are
written for torch's default layout: inputs time-major, (time, batch, ...), states
(layers, batch, units), steps of a decoder taking and returning its states.

Only torch is imported.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ChatbotEncoder(nn.Module):
    """The chatbot tutorial's ``EncoderRNN``: ids (time, batch) and their lengths, packed
    time-major into a 2-layer BiGRU, the directions summed; outputs and h_n returned."""

    def __init__(self, vocabulary: int = 30, hidden: int = 6) -> None:
        super().__init__()
        self.hidden = hidden
        self.embedding = nn.Embedding(vocabulary, 8)
        self.gru = nn.GRU(8, hidden, num_layers=2, bidirectional=True)

    def forward(
        self, input_seq: torch.Tensor, input_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(input_seq), input_lengths)
        outputs, hidden = self.gru(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs)
        return outputs[:, :, : self.hidden] + outputs[:, :, self.hidden :], hidden


class ChatbotAttentionDecoder(nn.Module):
    """The chatbot tutorial's ``LuongAttnDecoderRNN`` (dot scores): a step's ids (1,
    batch), the GRU's states (layers, batch, units) and the encoder's outputs (time,
    batch, units), all time-major; the scores summed by hand, ``bmm`` for the context."""

    def __init__(self, vocabulary: int = 20, hidden: int = 6) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, hidden)
        self.gru = nn.GRU(hidden, hidden, num_layers=2)
        self.concat = nn.Linear(2 * hidden, hidden)
        self.out = nn.Linear(hidden, vocabulary)

    def forward(
        self, input_step: torch.Tensor, last_hidden: torch.Tensor, encoder_outputs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rnn_output, hidden = self.gru(self.embedding(input_step), last_hidden)
        scores = torch.sum(rnn_output * encoder_outputs, dim=2).t()
        weights = F.softmax(scores, dim=1).unsqueeze(1)
        context = weights.bmm(encoder_outputs.transpose(0, 1)).squeeze(1)
        joined = torch.cat((rnn_output.squeeze(0), context), 1)
        return F.softmax(self.out(torch.tanh(self.concat(joined))), dim=1), hidden


class Seq2SeqEncoder(nn.Module):
    """bentrevett/pytorch-seq2seq's first ``Encoder``: ids (time, batch) into a 2-layer
    LSTM, its final (h, c) returned for the decoder."""

    def __init__(self, vocabulary: int = 20, hidden: int = 5) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, 6)
        self.rnn = nn.LSTM(6, hidden, num_layers=2, dropout=0.5)
        self.dropout = nn.Dropout(0.5)

    def forward(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, (hidden, cell) = self.rnn(self.dropout(self.embedding(src)))
        return hidden, cell


class Seq2SeqDecoder(nn.Module):
    """bentrevett/pytorch-seq2seq's first ``Decoder``, one step: a token id per row and
    the encoder's (h, c), (layers, batch, units); the next token's scores and the states."""

    def __init__(self, vocabulary: int = 20, hidden: int = 5) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, 6)
        self.rnn = nn.LSTM(6, hidden, num_layers=2, dropout=0.5)
        self.fc_out = nn.Linear(hidden, vocabulary)
        self.dropout = nn.Dropout(0.5)

    def forward(
        self, input: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        embedded = self.dropout(self.embedding(input.unsqueeze(0)))
        output, (hidden, cell) = self.rnn(embedded, (hidden, cell))
        return self.fc_out(output.squeeze(0)), hidden, cell


class SentimentLSTM(nn.Module):
    """bentrevett/pytorch-sentiment-analysis's upgraded model (torchtext's legacy layout):
    ids (time, batch) and lengths, packed, a 2-layer BiLSTM, its last layer's two final
    states joined and classified."""

    def __init__(self, vocabulary: int = 50, hidden: int = 8) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, 12, padding_idx=1)
        self.rnn = nn.LSTM(12, hidden, num_layers=2, bidirectional=True, dropout=0.5)
        self.fc = nn.Linear(2 * hidden, 1)
        self.dropout = nn.Dropout(0.5)

    def forward(self, text: torch.Tensor, text_lengths: torch.Tensor) -> torch.Tensor:
        embedded = self.dropout(self.embedding(text))
        packed = nn.utils.rnn.pack_padded_sequence(embedded, text_lengths.to("cpu"))
        _, (hidden, _) = self.rnn(packed)
        return self.fc(self.dropout(torch.cat((hidden[-2, :, :], hidden[-1, :, :]), dim=1)))


class NamesClassifier(nn.Module):
    """The tutorial classifying names by their characters: one-hot letters (time, batch,
    letters), an ``nn.RNN``'s final state, a Linear and ``LogSoftmax(dim=1)``."""

    def __init__(self, letters: int = 4, hidden: int = 6, languages: int = 3) -> None:
        super().__init__()
        self.rnn = nn.RNN(letters, hidden)
        self.h2o = nn.Linear(hidden, languages)
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, line_tensor: torch.Tensor) -> torch.Tensor:
        _, hidden = self.rnn(line_tensor)
        return self.softmax(self.h2o(hidden[0]))


class TextRNNAttention(nn.Module):
    """Chinese-Text-Classification-Pytorch's ``TextRNN_Att``: a BiLSTM whose steps are
    scored against a held vector, ``torch.matmul(M, self.w)``, and summed by the scores
    (and a score of each row, ``pooled @ self.v``, returned beside)."""

    def __init__(self, vocabulary: int = 30, hidden: int = 5) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, 6)
        self.lstm = nn.LSTM(6, hidden, batch_first=True, bidirectional=True)
        self.w = nn.Parameter(torch.randn(2 * hidden) * 0.5)
        self.v = nn.Parameter(torch.randn(2 * hidden))

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, _ = self.lstm(self.embedding(ids))
        alpha = F.softmax(torch.matmul(torch.tanh(h), self.w), dim=1).unsqueeze(-1)
        pooled = (h * alpha).sum(1)
        return pooled, pooled @ self.v


class TextRCNN(nn.Module):
    """Chinese-Text-Classification-Pytorch's ``TextRCNN``: a BiLSTM beside its embeddings,
    max-pooled by a window of the one length its inputs are padded to (32), then
    ``squeeze()``: it runs at 32 to 63 steps alone."""

    def __init__(self, vocabulary: int = 40, length: int = 32) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, 6)
        self.lstm = nn.LSTM(6, 4, batch_first=True, bidirectional=True)
        self.pool = nn.MaxPool1d(length)
        self.fc = nn.Linear(14, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(ids)
        out = F.relu(torch.cat((embedded, self.lstm(embedded)[0]), 2))
        return self.fc(self.pool(out.permute(0, 2, 1)).squeeze())


class WordLanguageModel(nn.Module):
    """pytorch/examples' ``word_language_model`` ``RNNModel`` (LSTM, tied weights): ids
    (time, batch) and the (h, c) of the batch before as one tuple; log-probabilities of
    (time * batch, vocabulary) and the new states."""

    def __init__(self, vocabulary: int = 50, size: int = 16) -> None:
        super().__init__()
        self.vocabulary = vocabulary
        self.drop = nn.Dropout(0.5)
        self.encoder = nn.Embedding(vocabulary, size)
        self.rnn = nn.LSTM(size, size, 2, dropout=0.5)
        self.decoder = nn.Linear(size, vocabulary)
        self.decoder.weight = self.encoder.weight

    def forward(
        self, input: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        output, hidden = self.rnn(self.drop(self.encoder(input)), hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.vocabulary)
        return F.log_softmax(decoded, dim=1), hidden


class CharacterLSTM(nn.Module):
    """Udacity's character-level LSTM notebook: one-hot characters (batch, time, tokens)
    and the LSTM's (h, c) as one argument; the steps merged for the loss,
    ``out.contiguous().view(-1, n_hidden)`` into the Linear."""

    def __init__(self, tokens: int = 12, hidden: int = 16) -> None:
        super().__init__()
        self.hidden = hidden
        self.lstm = nn.LSTM(tokens, hidden, 2, dropout=0.5, batch_first=True)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(hidden, tokens)

    def forward(
        self, x: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        r_output, hidden = self.lstm(x, hidden)
        out = self.dropout(r_output).contiguous().view(-1, self.hidden)
        return self.fc(out), hidden
