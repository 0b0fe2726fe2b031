"""The models both sides convert, written as users write them (the ones copied from
packages shared with the tests, :mod:`tests.packaged_models`), and their training.

This module imports torch only (no Keras, no xframe_bilstm), so the peer's environment
imports it too. Every model is trained a few hundred Adam steps on seeded random data so
its weights (and BatchNorm statistics) are far from their initial values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from tests.audio_models import Denoiser, EventDetector, SpectrogramCRN, WavEncoder
from tests.packaged_models import BLSTM, DeepSpeech, PositionalEncoding, TacotronEncoder

VOCAB = 60
TAGS = 9
SPEAKERS = 5
BATCH = 4  # the evaluation input's batch and time
STEPS = 20


class Tagger(nn.Module):
    """Embedding → 2-layer BiLSTM → Linear, one tag per token."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 32)
        self.lstm = nn.LSTM(32, 48, num_layers=2, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(96, TAGS)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(ids))
        return self.fc(out)


class LanguageId(nn.Module):
    """Embedding → BiLSTM, summed over time → Linear: one language per text."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 24)
        self.lstm = nn.LSTM(24, 32, bidirectional=True, batch_first=True)
        self.classifier = nn.Linear(64, 5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(ids))
        return self.classifier(out.sum(dim=1))


class CRNN(nn.Module):
    """Conv2d/BatchNorm2d/ReLU/MaxPool2d blocks → squeeze/permute → BiLSTM → Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),  # H 16 → 8, W → W/2
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d((8, 1)),  # H 8 → 1
        )
        self.rnn = nn.LSTM(32, 48, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(96, TAGS + 1)  # characters + the CTC blank

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.cnn(images).squeeze(2).permute(0, 2, 1)  # (B, W/2, C)
        out, _ = self.rnn(features)
        return self.fc(out)


class Diacritizer(nn.Module):
    """Embedding → BiLSTM → dot-product self-attention with a padding mask → Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 32, padding_idx=0)
        self.lstm = nn.LSTM(32, 32, bidirectional=True, batch_first=True)
        self.query = nn.Linear(64, 64)
        self.key = nn.Linear(64, 64)
        self.value = nn.Linear(64, 64)
        self.out = nn.Linear(128, TAGS)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(self.embedding(ids))
        q, k, v = self.query(hidden), self.key(hidden), self.value(hidden)
        scores = q @ k.transpose(1, 2) / math.sqrt(64)
        pad = ids == 0
        scores = scores.masked_fill(pad.unsqueeze(1), -1e9)
        weights = F.softmax(scores, dim=-1)
        context = weights @ v
        return self.out(torch.cat([hidden, context], dim=-1))


class VAD(nn.Module):
    """Conv1d front end → an LSTMCell loop in ``forward`` → Linear → sigmoid, per frame."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = 32
        self.conv = nn.Conv1d(20, 24, 5, padding=2)
        self.cell = nn.LSTMCell(24, self.hidden)
        self.head = nn.Linear(self.hidden, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(frames.transpose(1, 2))).transpose(1, 2)  # (B, T, 24)
        h = torch.zeros(x.size(0), self.hidden, device=x.device, dtype=x.dtype)
        c = torch.zeros(x.size(0), self.hidden, device=x.device, dtype=x.dtype)
        outputs = []
        for t in range(x.size(1)):
            h, c = self.cell(x[:, t], (h, c))
            outputs.append(h)
        return torch.sigmoid(self.head(torch.stack(outputs, dim=1)))


class VADChannelsFirst(VAD):
    """The same VAD reading (B, features, T) frames, as its Conv1d does."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(frames)).transpose(1, 2)  # (B, T, 24)
        h = torch.zeros(x.size(0), self.hidden, device=x.device, dtype=x.dtype)
        c = torch.zeros(x.size(0), self.hidden, device=x.device, dtype=x.dtype)
        outputs = []
        for t in range(x.size(1)):
            h, c = self.cell(x[:, t], (h, c))
            outputs.append(h)
        return torch.sigmoid(self.head(torch.stack(outputs, dim=1)))


class Warmup(nn.Module):
    """A small model each side converts first, untimed: Keras's and the capture's
    first-call costs are paid there."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 3, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0].sum(dim=1)


class Encoder(nn.Module):
    """A seq2seq encoder: Embedding → BiLSTM, returning its outputs and the final states
    (both directions' last h and c, projected for a one-direction decoder)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 32)
        self.lstm = nn.LSTM(32, 40, bidirectional=True, batch_first=True)
        self.fc_h = nn.Linear(80, 40)
        self.fc_c = nn.Linear(80, 40)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        outputs, (h_n, c_n) = self.lstm(self.embedding(ids))
        hidden = torch.tanh(self.fc_h(torch.cat([h_n[-2], h_n[-1]], dim=1)))
        cell = torch.tanh(self.fc_c(torch.cat([c_n[-2], c_n[-1]], dim=1)))
        return outputs, hidden, cell


class Autoencoder(nn.Module):
    """An LSTM autoencoder: a 2-layer encoder's final (h, c) start the decoder."""

    def __init__(self, features: int = 20, hidden: int = 32) -> None:
        super().__init__()
        self.encoder = nn.LSTM(features, hidden, num_layers=2, batch_first=True)
        self.decoder = nn.LSTM(features, hidden, num_layers=2, batch_first=True)
        self.out = nn.Linear(hidden, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, states = self.encoder(x)
        return self.out(self.decoder(torch.flip(x, [1]), states)[0])


class TransformerHybrid(nn.Module):
    """Embedding → BiLSTM → two transformer encoder layers → Linear, one tag per token."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 32)
        self.lstm = nn.LSTM(32, 16, batch_first=True, bidirectional=True)
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.fc = nn.Linear(32, TAGS)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.fc(self.encoder(self.lstm(self.embedding(ids))[0]))


class TiedLM(nn.Module):
    """A language model whose output layer is its embedding table (tied weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 32)
        self.lstm = nn.LSTM(32, 32, num_layers=2, batch_first=True)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lstm(self.embedding(ids))[0] @ self.embedding.weight.t()


class PackedTagger(nn.Module):
    """The tagger reading its rows' lengths: Embedding → packed 2-layer BiLSTM (rows in any
    order) → padded back to the input's length → Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 32)
        self.lstm = nn.LSTM(32, 48, num_layers=2, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(96, TAGS)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(
            self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = pad_packed_sequence(
            self.lstm(packed)[0], batch_first=True, total_length=ids.size(1)
        )
        return self.fc(out)


class LearnedStates(nn.Module):
    """The language classifier starting its BiLSTM from learned initial states:
    ``nn.Parameter``s stacked (directions, 1, H) as torch takes them, expanded over the
    batch. Its outputs are summed over time, so the first steps, where the states weigh
    most, reach the classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 24)
        self.lstm = nn.LSTM(24, 32, bidirectional=True, batch_first=True)
        self.h0 = nn.Parameter(torch.zeros(2, 1, 32))
        self.c0 = nn.Parameter(torch.zeros(2, 1, 32))
        self.classifier = nn.Linear(64, 5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        states = (self.h0.expand(-1, ids.size(0), -1), self.c0.expand(-1, ids.size(0), -1))
        out, _ = self.lstm(self.embedding(ids), states)
        return self.classifier(out.sum(dim=1))


class Seq2Seq(nn.Module):
    """An encoder–decoder trained with teacher forcing, ``forward(src, tgt)``: a 2-layer LSTM
    encoder's final (h, c) start a 2-layer LSTM decoder on the target ids, then a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.src_embedding = nn.Embedding(VOCAB, 24)
        self.tgt_embedding = nn.Embedding(VOCAB, 24)
        self.encoder = nn.LSTM(24, 32, num_layers=2, batch_first=True)
        self.decoder = nn.LSTM(24, 32, num_layers=2, batch_first=True)
        self.out = nn.Linear(32, VOCAB)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        _, states = self.encoder(self.src_embedding(src))
        y, _ = self.decoder(self.tgt_embedding(tgt), states)
        return self.out(y)


class CTCRecognizer(nn.Module):
    """crnn.pytorch's layout and result: convolutions over (B, 1, H, W), ``permute(2, 0, 1)``
    to (W, B, C), a time-major BiLSTM, ``view(T * b, h)`` into a Linear and back, and the
    log-probabilities returned time-major, (T, B, classes), as ``nn.CTCLoss`` reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d((16, 1)),  # H 16 → 1
        )
        self.rnn = nn.LSTM(16, 32, bidirectional=True)
        self.embedding = nn.Linear(64, TAGS + 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        conv = self.cnn(images).squeeze(2).permute(2, 0, 1)  # (W, B, C)
        recurrent, _ = self.rnn(conv)
        steps, batch, hidden = recurrent.size()
        output = self.embedding(recurrent.view(steps * batch, hidden)).view(steps, batch, -1)
        return F.log_softmax(output, dim=2)


class CharCNNTagger(nn.Module):
    """Word embeddings beside a character CNN max-pooled over each word (the words' and the
    characters' batch and time merged by ``view(B * T, W)``), a BiLSTM and a Linear per word:
    the NER tagger of Ma and Hovy (2016), ``forward(words, chars)``."""

    def __init__(self) -> None:
        super().__init__()
        self.words = nn.Embedding(VOCAB, 24)
        self.chars = nn.Embedding(VOCAB, 8)
        self.char_cnn = nn.Conv1d(8, 16, 3, padding=1)
        self.lstm = nn.LSTM(40, 32, batch_first=True, bidirectional=True)
        self.tags = nn.Linear(64, TAGS)

    def forward(self, words: torch.Tensor, chars: torch.Tensor) -> torch.Tensor:
        b, t, w = chars.shape
        c = self.chars(chars.view(b * t, w)).transpose(1, 2)
        c = torch.relu(self.char_cnn(c)).max(dim=2)[0].view(b, t, -1)
        out, _ = self.lstm(torch.cat([self.words(words), c], dim=-1))
        return self.tags(out)


class SpeakerAcoustic(nn.Module):
    """A multi-speaker acoustic model: frames and one speaker id per row, its embedding
    joined to every frame (``expand`` over the frames' steps), a BiLSTM and a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.speaker = nn.Embedding(SPEAKERS, 8)
        self.lstm = nn.LSTM(20 + 8, 32, batch_first=True, bidirectional=True)
        self.out = nn.Linear(64, TAGS)

    def forward(self, frames: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        voice = self.speaker(speaker).unsqueeze(1).expand(-1, frames.size(1), -1)
        return self.out(self.lstm(torch.cat([frames, voice], dim=-1))[0])


class CausalTCN(nn.Module):
    """A temporal convolutional front end as TCNs write it: frames (B, T, F) transposed,
    padded on the left (``F.pad``) for dilated causal convolutions, then an LSTM."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(20, 32, 3, dilation=1)
        self.conv2 = nn.Conv1d(32, 32, 3, dilation=2)
        self.lstm = nn.LSTM(32, 32, batch_first=True)
        self.out = nn.Linear(32, TAGS)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        h = frames.transpose(1, 2)
        h = F.relu(self.conv1(F.pad(h, (2, 0))))  # F.relu: nobuco refuses torch.relu
        h = F.relu(self.conv2(F.pad(h, (4, 0))))
        return self.out(self.lstm(h.transpose(1, 2))[0])


class LastStepClassifier(nn.Module):
    """A sentence classifier reading each padded row's last valid LSTM output, its position
    counted from the ids and taken with ``gather``."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 24, padding_idx=0)
        self.lstm = nn.LSTM(24, 32, batch_first=True)
        self.fc = nn.Linear(32, TAGS)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(ids))
        last = ((ids != 0).sum(dim=1) - 1).view(-1, 1, 1).expand(-1, 1, out.size(2))
        return self.fc(out.gather(1, last).squeeze(1))


class PositionalLSTM(nn.Module):
    """Token embeddings scaled and given PyTorch's Transformer tutorial's sinusoidal
    positions (a time-major (max_len, 1, d) buffer cut to the steps), then a BiLSTM."""

    def __init__(self, d_model: int = 24) -> None:
        super().__init__()
        self.d_model = d_model
        self.embedding = nn.Embedding(VOCAB, d_model)
        self.positions = PositionalEncoding(d_model, max_len=64)
        self.lstm = nn.LSTM(d_model, 16, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(32, TAGS)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids).transpose(0, 1) * math.sqrt(self.d_model)
        return self.fc(self.lstm(self.positions(x).transpose(0, 1))[0])


class StatisticsPooling(nn.Module):
    """A language identifier over frames: an LSTM, its outputs' mean and standard deviation
    over the steps joined (x-vector statistics pooling), then a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(20, 32, batch_first=True)
        self.fc = nn.Linear(64, TAGS)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(frames)
        return self.fc(torch.cat([h.mean(dim=1), h.std(dim=1)], dim=-1))


@dataclass(frozen=True)
class Spec:
    """One model: its class, what it reads, and the input shape ``torch_to_keras`` needs."""

    make: Callable[[], nn.Module]
    kind: str  # "ids" or "float"
    shape: tuple[int, ...]  # the evaluation input's shape
    # for torch_to_keras, where needed: one shape, or one per input
    input_shape: tuple[int | None, ...] | tuple[tuple[int | None, ...], ...] | None = None
    time_axis: int = 1  # the input's axis of time
    stride: int = 1  # input steps per output step on that axis
    lengths: bool = False  # forward(x, lengths): the rows' lengths a second input
    target: int = 0  # forward(src, tgt): the steps of target ids, a second input
    chars: int = 0  # forward(words, chars): the characters of each word, a second input
    speakers: bool = False  # forward(frames, speaker): one speaker id per row, a second input


SPECS: dict[str, Spec] = {
    "tagger": Spec(Tagger, "ids", (BATCH, STEPS)),
    "language_id": Spec(LanguageId, "ids", (BATCH, STEPS)),
    "crnn": Spec(
        CRNN, "float", (BATCH, 1, 16, 2 * STEPS), input_shape=(1, 16, None), time_axis=3, stride=2
    ),
    "diacritizer": Spec(Diacritizer, "ids", (BATCH, STEPS)),
    "vad": Spec(VAD, "float", (BATCH, STEPS, 20), input_shape=(None, 20)),
    "vad_channels_first": Spec(VADChannelsFirst, "float", (BATCH, 20, STEPS), time_axis=2),
    "encoder": Spec(Encoder, "ids", (BATCH, STEPS)),
    "deepspeech": Spec(
        partial(DeepSpeech, n_feature=20, n_hidden=32, n_class=TAGS),
        "float",
        (BATCH, 1, STEPS, 20),
        input_shape=(1, None, 20),
        time_axis=2,
    ),
    "demucs_blstm": Spec(partial(BLSTM, dim=24), "float", (BATCH, 24, STEPS), time_axis=2),
    "autoencoder": Spec(Autoencoder, "float", (BATCH, STEPS, 20), input_shape=(None, 20)),
    "transformer_hybrid": Spec(TransformerHybrid, "ids", (BATCH, STEPS)),
    "tied_lm": Spec(TiedLM, "ids", (BATCH, STEPS)),
    "tacotron_encoder": Spec(
        partial(TacotronEncoder, dim=32), "float", (BATCH, 32, STEPS), time_axis=2, lengths=True
    ),
    "packed_tagger": Spec(PackedTagger, "ids", (BATCH, STEPS), lengths=True),
    "learned_states": Spec(LearnedStates, "ids", (BATCH, STEPS)),
    "seq2seq": Spec(Seq2Seq, "ids", (BATCH, STEPS), target=STEPS - 6),
    "char_cnn_tagger": Spec(
        CharCNNTagger, "ids", (BATCH, STEPS), input_shape=((None,), (None, 12)), chars=12
    ),
    "crnn_ctc": Spec(
        CTCRecognizer, "float", (BATCH, 1, 16, STEPS), input_shape=(1, 16, None), time_axis=3
    ),
    "speaker_acoustic": Spec(
        SpeakerAcoustic, "float", (BATCH, STEPS, 20), input_shape=((None, 20), ()), speakers=True
    ),
    "causal_tcn": Spec(CausalTCN, "float", (BATCH, STEPS, 20)),
    "last_step_classifier": Spec(LastStepClassifier, "ids", (BATCH, STEPS)),
    "positional_lstm": Spec(PositionalLSTM, "ids", (BATCH, STEPS)),
    "statistics_pooling": Spec(StatisticsPooling, "float", (BATCH, STEPS, 20)),
    # 164 samples: 40, then 9 frames; 7 frames longer is 220 samples, cut back to 212
    "denoiser": Spec(partial(Denoiser, hidden=16), "float", (BATCH, 1, 164), time_axis=2, stride=8),
    "spectrogram_crn": Spec(
        partial(SpectrogramCRN, channels=8),
        "float",
        (BATCH, 1, STEPS, 16),
        input_shape=(1, None, 16),
        time_axis=2,
    ),
    "wav_encoder": Spec(partial(WavEncoder, width=16), "float", (BATCH, 20 * STEPS), stride=20),
    "event_detector": Spec(
        partial(EventDetector, features=20, classes=TAGS), "float", (BATCH, STEPS, 20)
    ),
}


LONGER = 7  # extra steps of the second evaluation input


def input_shape_of(name: str, longer: bool = False) -> tuple[int, ...]:
    """The evaluation input's shape; ``longer`` adds ``LONGER`` steps on the time axis."""
    spec = SPECS[name]
    shape = list(spec.shape)
    shape[spec.time_axis] += LONGER * spec.stride if longer else 0
    return tuple(shape)


def example_input(name: str, seed: int = 1, longer: bool = False) -> tuple[np.ndarray, ...]:
    """The evaluation inputs of model ``name``: ids or standard normal floats, then, for a
    model reading them, the rows' lengths (one row full, the others shorter, longest first),
    or the target ids of an encoder–decoder, or each word's characters, or each row's
    speaker id; ``longer`` adds
    steps (to both of its inputs).
    Ids and the rows of a model reading lengths are padded with 0 at the end (ids at lengths
    even where the model does not read them, for the diacritizer's mask)."""
    spec = SPECS[name]
    shape = input_shape_of(name, longer)
    rng = np.random.default_rng(seed)
    if spec.kind == "float":
        x = rng.standard_normal(shape).astype(np.float32)
    else:
        x = rng.integers(1, VOCAB, shape).astype(np.int64)
    steps = shape[spec.time_axis]
    lengths = np.linspace(steps, steps // 2, shape[0]).astype(np.int64)
    if spec.kind == "ids" or spec.lengths:
        along = [-1 if axis == spec.time_axis else 1 for axis in range(len(shape))]
        padded = np.arange(steps).reshape(along) >= lengths.reshape([-1] + [1] * (len(shape) - 1))
        x[np.broadcast_to(padded, shape)] = 0
    if spec.target:
        steps = spec.target + (LONGER if longer else 0)
        return x, rng.integers(1, VOCAB, (shape[0], steps)).astype(np.int64)
    if spec.chars:  # each word's characters, 0 past its length, words padded as x is
        chars = rng.integers(1, VOCAB, (*shape, spec.chars)).astype(np.int64)
        chars[(np.arange(spec.chars) >= rng.integers(2, spec.chars, shape)[..., None])] = 0
        chars[x == 0] = 0
        return x, chars
    if spec.speakers:
        return x, rng.integers(0, SPEAKERS, shape[0]).astype(np.int64)
    return (x, lengths) if spec.lengths else (x,)


def keras_inputs(inputs: tuple[np.ndarray, ...]) -> np.ndarray | list[np.ndarray]:
    """The inputs as a Keras model with that many inputs is called: one bare, more listed."""
    return list(inputs) if len(inputs) > 1 else inputs[0]


def torch_outputs(
    module: nn.Module, inputs: tuple[np.ndarray, ...], dtype: torch.dtype = torch.float32
) -> list[np.ndarray]:
    """``module(*inputs)`` in ``dtype`` (ids and lengths stay integers), one array per tensor
    returned."""
    tensors = [torch.from_numpy(a) for a in inputs]
    tensors = [t.to(dtype) if t.is_floating_point() else t for t in tensors]
    with torch.no_grad():
        output = module.to(dtype)(*tensors)
    module.float()
    outputs = output if isinstance(output, tuple) else (output,)
    return [o.numpy() for o in outputs]


def _loss(name: str, output: object, generator: torch.Generator) -> torch.Tensor:
    """A loss against seeded random targets, so training moves every weight."""
    if name == "encoder":
        assert isinstance(output, tuple)
        outputs, hidden, cell = output
        target = torch.randn(outputs.shape, generator=generator)
        return F.mse_loss(outputs, target) + hidden.square().mean() + (cell - 0.5).square().mean()
    assert isinstance(output, torch.Tensor)
    if name == "vad":
        labels = torch.randint(0, 2, output.shape, generator=generator).float()
        return F.binary_cross_entropy(output, labels)
    classes = output.shape[-1]
    labels = torch.randint(0, classes, output.shape[:-1], generator=generator)
    return F.cross_entropy(output.reshape(-1, classes), labels.reshape(-1))


def train(name: str, steps: int = 200, seed: int = 0) -> nn.Module:
    """Model ``name`` trained ``steps`` Adam steps on seeded random data, in eval mode."""
    torch.manual_seed(seed)
    spec = SPECS[name]
    model = spec.make()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        x, *lengths = (torch.from_numpy(a) for a in example_input(name, seed=1000 + step))
        if spec.kind == "float":
            x = x + 0.5 * torch.randn(x.shape, generator=generator)  # not the evaluation data
        optimizer.zero_grad()
        loss = _loss(name, model(x, *lengths), generator)
        loss.backward()
        optimizer.step()
    return model.eval()


def load(name: str, folder: Path) -> nn.Module:
    """Model ``name`` with the state_dict saved in ``folder``, in eval mode."""
    model = SPECS[name].make()
    model.load_state_dict(torch.load(folder / f"{name}.pt", weights_only=True))
    return model.eval()
