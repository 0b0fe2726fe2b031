"""Recurrent models copied from public packages as the packages define them (docstrings
left out, defaults kept), so the tests and the benchmarks port the same code: torchaudio
2.11's DeepSpeech, Tacotron 2 encoder and WaveRNN, demucs 4.1's BLSTM, and the
``PositionalEncoding`` of PyTorch's Transformer tutorial.

Only torch is imported: the peers benchmark imports this module in its own environment.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class PositionalEncoding(nn.Module):
    """PyTorch's "Language Modeling with nn.Transformer" tutorial's ``PositionalEncoding``:
    sinusoidal positions in a (max_len, 1, d_model) buffer, added to time-major input."""

    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 5000):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, 1, d_model)
        pe[:, 0, 0::2] = torch.sin(position * div_term)
        pe[:, 0, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.pe[: x.size(0)]
        return self.dropout(x)


class FullyConnected(nn.Module):
    """torchaudio 2.11's ``torchaudio.models.deepspeech.FullyConnected``."""

    def __init__(self, n_feature: int, n_hidden: int, dropout: float, relu_max_clip: int = 20):
        super().__init__()
        self.fc = nn.Linear(n_feature, n_hidden, bias=True)
        self.relu_max_clip = relu_max_clip
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x)
        x = F.relu(x)
        x = F.hardtanh(x, 0, self.relu_max_clip)
        if self.dropout:
            x = F.dropout(x, self.dropout, self.training)
        return x


class DeepSpeech(nn.Module):
    """torchaudio 2.11's ``torchaudio.models.DeepSpeech``: (batch, channel, time, feature)
    to (batch, time, class), time-major around its recurrent layer."""

    def __init__(self, n_feature: int = 13, n_hidden: int = 16, n_class: int = 6) -> None:
        super().__init__()
        self.n_hidden = n_hidden
        self.fc1 = FullyConnected(n_feature, n_hidden, 0.0)
        self.fc2 = FullyConnected(n_hidden, n_hidden, 0.0)
        self.fc3 = FullyConnected(n_hidden, n_hidden, 0.0)
        self.bi_rnn = nn.RNN(
            n_hidden, n_hidden, num_layers=1, nonlinearity="relu", bidirectional=True
        )
        self.fc4 = FullyConnected(n_hidden, n_hidden, 0.0)
        self.out = nn.Linear(n_hidden, n_class)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc3(self.fc2(self.fc1(x)))  # N x C x T x H
        x = x.squeeze(1).transpose(0, 1)  # T x N x H
        x, _ = self.bi_rnn(x)
        x = x[:, :, : self.n_hidden] + x[:, :, self.n_hidden :]
        x = self.out(self.fc4(x)).permute(1, 0, 2)  # N x T x n_class
        return F.log_softmax(x, dim=2)


class BLSTM(nn.Module):
    """demucs 4.1's ``demucs.demucs.BLSTM`` (without its ``max_steps`` framing): (B, C, T)
    permuted to (T, B, C) for a 2-layer BiLSTM, a Linear, permuted back, plus a skip."""

    def __init__(self, dim: int = 6, layers: int = 2, skip: bool = True) -> None:
        super().__init__()
        self.lstm = nn.LSTM(bidirectional=True, num_layers=layers, hidden_size=dim, input_size=dim)
        self.linear = nn.Linear(2 * dim, dim)
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        x = x.permute(2, 0, 1)
        x = self.lstm(x)[0]
        x = self.linear(x)
        x = x.permute(1, 2, 0)
        if self.skip:
            x = x + y
        return x


class TacotronEncoder(nn.Module):
    """torchaudio 2.11's ``torchaudio.models.tacotron2._Encoder``, as the package defines it
    (its ``_get_conv1d_layer`` is a plain ``nn.Conv1d``): (B, C, T) through three
    Conv1d/BatchNorm1d/ReLU blocks, transposed, packed into a BiLSTM and padded back."""

    def __init__(self, dim: int = 16, convolutions: int = 3, kernel_size: int = 5) -> None:
        super().__init__()
        self.convolutions = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(dim, dim, kernel_size, stride=1, padding=(kernel_size - 1) // 2),
                nn.BatchNorm1d(dim),
            )
            for _ in range(convolutions)
        )
        self.lstm = nn.LSTM(dim, dim // 2, 1, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor, input_lengths: torch.Tensor) -> torch.Tensor:
        for conv in self.convolutions:
            x = F.dropout(F.relu(conv(x)), 0.5, self.training)
        x = x.transpose(1, 2)
        input_lengths = input_lengths.cpu()
        x = nn.utils.rnn.pack_padded_sequence(x, input_lengths, batch_first=True)
        outputs, _ = self.lstm(x)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True)
        return outputs


class ResBlock(nn.Module):
    def __init__(self, n_freq: int = 128) -> None:
        super().__init__()
        self.resblock_model = nn.Sequential(
            nn.Conv1d(in_channels=n_freq, out_channels=n_freq, kernel_size=1, bias=False),
            nn.BatchNorm1d(n_freq),
            nn.ReLU(inplace=True),
            nn.Conv1d(in_channels=n_freq, out_channels=n_freq, kernel_size=1, bias=False),
            nn.BatchNorm1d(n_freq),
        )

    def forward(self, specgram: Tensor) -> Tensor:
        return self.resblock_model(specgram) + specgram


class MelResNet(nn.Module):
    def __init__(self, n_res_block=10, n_freq=128, n_hidden=128, n_output=128, kernel_size=5):
        super().__init__()
        ResBlocks = [ResBlock(n_hidden) for _ in range(n_res_block)]
        self.melresnet_model = nn.Sequential(
            nn.Conv1d(n_freq, n_hidden, kernel_size=kernel_size, bias=False),
            nn.BatchNorm1d(n_hidden),
            nn.ReLU(inplace=True),
            *ResBlocks,
            nn.Conv1d(in_channels=n_hidden, out_channels=n_output, kernel_size=1),
        )

    def forward(self, specgram: Tensor) -> Tensor:
        return self.melresnet_model(specgram)


class Stretch2d(nn.Module):
    def __init__(self, time_scale: int, freq_scale: int) -> None:
        super().__init__()
        self.freq_scale = freq_scale
        self.time_scale = time_scale

    def forward(self, specgram: Tensor) -> Tensor:
        return specgram.repeat_interleave(self.freq_scale, -2).repeat_interleave(
            self.time_scale, -1
        )


class UpsampleNetwork(nn.Module):
    def __init__(
        self, upsample_scales, n_res_block=10, n_freq=128, n_hidden=128, n_output=128,
        kernel_size=5,
    ) -> None:  # fmt: skip
        super().__init__()
        total_scale = 1
        for upsample_scale in upsample_scales:
            total_scale *= upsample_scale
        self.total_scale: int = total_scale
        self.indent = (kernel_size - 1) // 2 * total_scale
        self.resnet = MelResNet(n_res_block, n_freq, n_hidden, n_output, kernel_size)
        self.resnet_stretch = Stretch2d(total_scale, 1)
        up_layers = []
        for scale in upsample_scales:
            stretch = Stretch2d(scale, 1)
            conv = nn.Conv2d(
                in_channels=1, out_channels=1, kernel_size=(1, scale * 2 + 1),
                padding=(0, scale), bias=False,
            )  # fmt: skip
            torch.nn.init.constant_(conv.weight, 1.0 / (scale * 2 + 1))
            up_layers.append(stretch)
            up_layers.append(conv)
        self.upsample_layers = nn.Sequential(*up_layers)

    def forward(self, specgram: Tensor) -> tuple[Tensor, Tensor]:
        resnet_output = self.resnet(specgram).unsqueeze(1)
        resnet_output = self.resnet_stretch(resnet_output)
        resnet_output = resnet_output.squeeze(1)
        specgram = specgram.unsqueeze(1)
        upsampling_output = self.upsample_layers(specgram)
        upsampling_output = upsampling_output.squeeze(1)[:, :, self.indent : -self.indent]
        return upsampling_output, resnet_output


class WaveRNN(nn.Module):
    def __init__(
        self, upsample_scales, n_classes, hop_length, n_res_block=10, n_rnn=512, n_fc=512,
        kernel_size=5, n_freq=128, n_hidden=128, n_output=128,
    ) -> None:  # fmt: skip
        super().__init__()
        self.kernel_size = kernel_size
        self._pad = (kernel_size - 1 if kernel_size % 2 else kernel_size) // 2
        self.n_rnn = n_rnn
        self.n_aux = n_output // 4
        self.hop_length = hop_length
        self.n_classes = n_classes
        self.n_bits: int = int(math.log2(self.n_classes))
        total_scale = 1
        for upsample_scale in upsample_scales:
            total_scale *= upsample_scale
        if total_scale != self.hop_length:
            raise ValueError(
                f"Expected: total_scale == hop_length, but found {total_scale} != {hop_length}"
            )
        self.upsample = UpsampleNetwork(
            upsample_scales, n_res_block, n_freq, n_hidden, n_output, kernel_size
        )
        self.fc = nn.Linear(n_freq + self.n_aux + 1, n_rnn)
        self.rnn1 = nn.GRU(n_rnn, n_rnn, batch_first=True)
        self.rnn2 = nn.GRU(n_rnn + self.n_aux, n_rnn, batch_first=True)
        self.relu1 = nn.ReLU(inplace=True)
        self.relu2 = nn.ReLU(inplace=True)
        self.fc1 = nn.Linear(n_rnn + self.n_aux, n_fc)
        self.fc2 = nn.Linear(n_fc + self.n_aux, n_fc)
        self.fc3 = nn.Linear(n_fc, self.n_classes)

    def forward(self, waveform: Tensor, specgram: Tensor) -> Tensor:
        if waveform.size(1) != 1:
            raise ValueError("Require the input channel of waveform is 1")
        if specgram.size(1) != 1:
            raise ValueError("Require the input channel of specgram is 1")
        waveform, specgram = waveform.squeeze(1), specgram.squeeze(1)
        batch_size = waveform.size(0)
        h1 = torch.zeros(1, batch_size, self.n_rnn, dtype=waveform.dtype, device=waveform.device)
        h2 = torch.zeros(1, batch_size, self.n_rnn, dtype=waveform.dtype, device=waveform.device)
        specgram, aux = self.upsample(specgram)
        specgram = specgram.transpose(1, 2)
        aux = aux.transpose(1, 2)
        aux_idx = [self.n_aux * i for i in range(5)]
        a1 = aux[:, :, aux_idx[0] : aux_idx[1]]
        a2 = aux[:, :, aux_idx[1] : aux_idx[2]]
        a3 = aux[:, :, aux_idx[2] : aux_idx[3]]
        a4 = aux[:, :, aux_idx[3] : aux_idx[4]]
        x = torch.cat([waveform.unsqueeze(-1), specgram, a1], dim=-1)
        x = self.fc(x)
        res = x
        x, _ = self.rnn1(x, h1)
        x = x + res
        res = x
        x = torch.cat([x, a2], dim=-1)
        x, _ = self.rnn2(x, h2)
        x = x + res
        x = torch.cat([x, a3], dim=-1)
        x = self.fc1(x)
        x = self.relu1(x)
        x = torch.cat([x, a4], dim=-1)
        x = self.fc2(x)
        x = self.relu2(x)
        x = self.fc3(x)
        return x.unsqueeze(1)
