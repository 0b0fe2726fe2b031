"""Audio models with convolution front ends, as their papers' and repositories' code writes
them, in small, so the tests and the peers benchmark port the same code: demucs's
denoiser, Tan and Wang's convolutional recurrent network, wav2vec 2.0's feature encoder
and a sound event detector, each around a recurrent core.

Only torch is imported: the peers benchmark imports this module in its own environment.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Denoiser(nn.Module):
    """demucs's denoiser: the (B, 1, samples) signal encoded by strided convolutions and
    GLUs, a BLSTM over time-major frames, decoded by GLUs and transposed convolutions back
    to samples, each encoder's output cut to its decoder's length and added
    (``skip[..., : x.shape[-1]]``)."""

    def __init__(self, hidden: int = 8, kernel: int = 8, stride: int = 4) -> None:
        super().__init__()
        self.encoder, self.decoder = nn.ModuleList(), nn.ModuleList()
        channels = 1
        for index in range(2):
            encode = [nn.Conv1d(channels, hidden, kernel, stride), nn.ReLU()]
            self.encoder.append(nn.Sequential(*encode, nn.Conv1d(hidden, 2 * hidden, 1), nn.GLU(1)))
            decode = [nn.Conv1d(hidden, 2 * hidden, 1), nn.GLU(1)]
            decode.append(nn.ConvTranspose1d(hidden, channels, kernel, stride))
            self.decoder.insert(0, nn.Sequential(*decode, *([nn.ReLU()] if index else [])))
            channels = hidden
        self.lstm = nn.LSTM(hidden, hidden, 2, bidirectional=True)
        self.linear = nn.Linear(2 * hidden, hidden)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        x, skips = mix, []
        for encode in self.encoder:
            x = encode(x)
            skips.append(x)
        x = self.linear(self.lstm(x.permute(2, 0, 1))[0]).permute(1, 2, 0)
        for decode in self.decoder:
            skip = skips.pop(-1)
            x = decode(x + skip[..., : x.shape[-1]])
        return x


class SpectrogramCRN(nn.Module):
    """Tan and Wang's convolutional recurrent network for speech enhancement: a (B, 1, T, F)
    spectrogram, Conv2d encoders strided over frequency, an LSTM over time, ConvTranspose2d
    decoders (the last with output_padding) reading the encoders' outputs joined to
    theirs."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        c = channels
        self.e1, self.n1 = nn.Conv2d(1, c, (1, 3), stride=(1, 2)), nn.BatchNorm2d(c)
        self.e2, self.n2 = nn.Conv2d(c, 2 * c, (1, 3), stride=(1, 2)), nn.BatchNorm2d(2 * c)
        self.lstm = nn.LSTM(6 * c, 6 * c, batch_first=True)  # 16 frequencies: 2 c x 3
        self.d2, self.n3 = nn.ConvTranspose2d(4 * c, c, (1, 3), stride=(1, 2)), nn.BatchNorm2d(c)
        self.d1 = nn.ConvTranspose2d(2 * c, 1, (1, 3), stride=(1, 2), output_padding=(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = F.elu(self.n1(self.e1(x)))
        e2 = F.elu(self.n2(self.e2(e1)))
        b, c, t, f = e2.shape
        h = self.lstm(e2.permute(0, 2, 1, 3).reshape(b, t, c * f))[0]
        h = h.reshape(b, t, c, f).permute(0, 2, 1, 3)
        d2 = F.elu(self.n3(self.d2(torch.cat([h, e2], 1))))
        return F.softplus(self.d1(torch.cat([d2, e1], 1)))


class WavEncoder(nn.Module):
    """wav2vec 2.0's feature encoder before a BiGRU: raw audio (B, samples) given a
    channel in ``forward``, strided convolutions of (kernel, stride) ``shapes``, the first
    normalized per channel (``GroupNorm(C, C)``), GELUs, then per-frame scores."""

    def __init__(
        self, shapes: tuple[tuple[int, int], ...] = ((10, 5), (3, 2), (2, 2)), width: int = 8
    ) -> None:
        super().__init__()
        inputs = [1] + [width] * (len(shapes) - 1)
        self.convs = nn.ModuleList(
            nn.Conv1d(c, width, k, stride=s) for c, (k, s) in zip(inputs, shapes)
        )
        self.norm = nn.GroupNorm(width, width)
        self.gru = nn.GRU(width, width, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * width, 3)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = wav.unsqueeze(1)
        for index, conv in enumerate(self.convs):
            x = F.gelu(self.norm(conv(x)) if index == 0 else conv(x))
        return self.out(self.gru(x.transpose(1, 2))[0])


class EventDetector(nn.Module):
    """A sound event detector: log-mel frames (B, T, F) pooled over time by 2 after a
    convolution, a BiGRU, per-frame scores upsampled by 2 back to the frames' rate
    (``F.interpolate``) and by 2 again (``nn.Upsample``)."""

    def __init__(self, features: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(features, 6, 3, padding=1)
        self.gru = nn.GRU(6, 5, batch_first=True, bidirectional=True)
        self.head = nn.Linear(10, classes)
        self.up = nn.Upsample(scale_factor=2)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        h = F.max_pool1d(F.relu(self.conv(frames.transpose(1, 2))), 2)
        scores = torch.sigmoid(self.head(self.gru(h.transpose(1, 2))[0]))
        return self.up(F.interpolate(scores.transpose(1, 2), scale_factor=2.0))
