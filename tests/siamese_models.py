"""Siamese and pair models as widely copied code writes them: one encoder reads both inputs.

Torch modules (random weights; their code is what is tried):

- ``ManhattanLSTM``: the Manhattan LSTM of question-pair similarity (Mueller and
  Thyagarajan's MaLSTM, as its PyTorch ports write it): one Embedding and one LSTM read
  both questions, ``exp(-|h_a - h_b|_1)`` compares the final states.
- ``InferSentPair``: InferSent's natural-language-inference classifier: one BiLSTM with max
  pooling over time encodes premise and hypothesis, ``[u, v, |u - v|, u * v]`` feeds an MLP.
- ``CosineBiLSTM``: a sentence-similarity model returning ``F.cosine_similarity`` of the
  two BiLSTM encodings (the last forward and backward states joined).
- ``PackedPair``: an NLI model packing each sentence by its own lengths,
  ``forward(premise, premise_lengths, hypothesis, hypothesis_lengths)``.
- ``ESIM``: the enhanced sequential inference model: cross attention between the two
  encodings, masked on their padding, a second shared BiLSTM, masked pooling.

Keras models, built by functions taking the ``keras`` module (Keras 3 or tf_keras):

- ``keras_cosine_pair``: a shared Embedding and BiLSTM, ``Dot(axes=1, normalize=True)``.
- ``keras_nested_pair``: the encoder as a ``Sequential`` called on both inputs, then
  ``Concatenate`` of both encodings and their difference, a ``Dense`` sigmoid (the
  question-pair kernels' head).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

VOCABULARY = 40


class ManhattanLSTM(nn.Module):
    def __init__(self, embedding: int = 12, hidden: int = 16) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCABULARY, embedding)
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        _, (h_left, _) = self.lstm(self.embedding(left))
        _, (h_right, _) = self.lstm(self.embedding(right))
        distance = torch.sum(torch.abs(h_left[-1] - h_right[-1]), dim=1, keepdim=True)
        return torch.exp(-distance)


class MaxPoolEncoder(nn.Module):
    def __init__(self, embedding: int, hidden: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCABULARY, embedding)
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True, bidirectional=True)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(ids))
        return torch.max(out, dim=1)[0]


class InferSentPair(nn.Module):
    def __init__(self, embedding: int = 12, hidden: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.encoder = MaxPoolEncoder(embedding, hidden)
        self.classifier = nn.Sequential(
            nn.Linear(8 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, classes)
        )

    def forward(self, premise: torch.Tensor, hypothesis: torch.Tensor) -> torch.Tensor:
        u, v = self.encoder(premise), self.encoder(hypothesis)
        return self.classifier(torch.cat([u, v, torch.abs(u - v), u * v], dim=1))


class CosineBiLSTM(nn.Module):
    def __init__(self, embedding: int = 12, hidden: int = 16) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCABULARY, embedding)
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True, bidirectional=True)

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(self.embedding(ids))
        return torch.cat([h[-2], h[-1]], dim=1)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return nn.functional.cosine_similarity(self.encode(first), self.encode(second))


class PackedPair(nn.Module):
    """An NLI model packing each sentence by its own lengths (unsorted), one BiLSTM for both,
    its final states joined: ``forward(premise, premise_lengths, hypothesis,
    hypothesis_lengths)``."""

    def __init__(self, embedding: int = 12, hidden: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCABULARY, embedding, padding_idx=0)
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(4 * hidden, classes)

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, (h, _) = self.lstm(packed)
        return torch.cat([h[-2], h[-1]], dim=1)

    def forward(
        self,
        premise: torch.Tensor,
        premise_lengths: torch.Tensor,
        hypothesis: torch.Tensor,
        hypothesis_lengths: torch.Tensor,
    ) -> torch.Tensor:
        pair = [self.encode(premise, premise_lengths), self.encode(hypothesis, hypothesis_lengths)]
        return self.classifier(torch.cat(pair, dim=1))


class ESIM(nn.Module):
    """Chen et al.'s ESIM for natural-language inference, as its PyTorch ports write it, in
    small: one BiLSTM encodes both sentences, each attends to the other (``bmm``, a softmax
    masked on the padding ids), the local inference ``[a, ã, a - ã, a * ã]`` is projected
    and composed by a second shared BiLSTM, then masked average and max pooling of both feed
    the classifier."""

    def __init__(self, embedding: int = 12, hidden: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCABULARY, embedding, padding_idx=0)
        self.encoder = nn.LSTM(embedding, hidden, batch_first=True, bidirectional=True)
        self.projection = nn.Sequential(nn.Linear(8 * hidden, hidden), nn.ReLU())
        self.composition = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
        self.classifier = nn.Sequential(
            nn.Linear(8 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, classes)
        )

    def forward(self, premise: torch.Tensor, hypothesis: torch.Tensor) -> torch.Tensor:
        p_mask, h_mask = (premise != 0).float(), (hypothesis != 0).float()
        a, _ = self.encoder(self.embedding(premise))
        b, _ = self.encoder(self.embedding(hypothesis))
        scores = torch.bmm(a, b.transpose(1, 2))
        to_b = torch.softmax(scores.masked_fill(h_mask.unsqueeze(1) == 0, -1e7), dim=-1)
        to_a = torch.softmax(
            scores.transpose(1, 2).masked_fill(p_mask.unsqueeze(1) == 0, -1e7), dim=-1
        )
        a_aligned, b_aligned = torch.bmm(to_b, b), torch.bmm(to_a, a)
        ma = self.projection(torch.cat([a, a_aligned, a - a_aligned, a * a_aligned], dim=-1))
        mb = self.projection(torch.cat([b, b_aligned, b - b_aligned, b * b_aligned], dim=-1))
        va, _ = self.composition(ma)
        vb, _ = self.composition(mb)
        pooled = []
        for v, mask in ((va, p_mask), (vb, h_mask)):
            average = torch.sum(v * mask.unsqueeze(-1), dim=1) / torch.sum(
                mask, dim=1, keepdim=True
            )
            pooled += [average, v.masked_fill(mask.unsqueeze(-1) == 0, -1e7).max(dim=1)[0]]
        return self.classifier(torch.cat(pooled, dim=1))


TORCH_MODELS = {
    "ManhattanLSTM": ManhattanLSTM,
    "InferSentPair": InferSentPair,
    "CosineBiLSTM": CosineBiLSTM,
    "PackedPair": PackedPair,
    "ESIM": ESIM,
}


def keras_cosine_pair(keras: Any) -> Any:
    layers = keras.layers
    left = keras.Input((None,), dtype="int32", name="left")
    right = keras.Input((None,), dtype="int32", name="right")
    embedding = layers.Embedding(VOCABULARY, 12, mask_zero=True, name="embedding")
    encoder = layers.Bidirectional(layers.LSTM(16), name="encoder")
    a, b = encoder(embedding(left)), encoder(embedding(right))
    return keras.Model([left, right], layers.Dot(1, normalize=True, name="cosine")([a, b]))


def keras_nested_pair(keras: Any) -> Any:
    layers = keras.layers
    encoder = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            layers.Embedding(VOCABULARY, 12, mask_zero=True, name="embedding"),
            layers.LSTM(16, name="lstm"),
        ],
        name="encoder",
    )
    left = keras.Input((None,), dtype="int32", name="left")
    right = keras.Input((None,), dtype="int32", name="right")
    a, b = encoder(left), encoder(right)
    difference = layers.Subtract(name="difference")([a, b])
    joined = layers.Concatenate(name="joined")([a, b, difference])
    return keras.Model([left, right], layers.Dense(1, activation="sigmoid", name="same")(joined))


KERAS_MODELS = {"cosine pair": keras_cosine_pair, "nested encoder pair": keras_nested_pair}
