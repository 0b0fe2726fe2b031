"""torchaudio 2.11's WaveRNN vocoder, as the package defines it (``torchaudio.models.
wavernn``, docstrings left out): ``forward(waveform, specgram)`` of two inputs whose
lengths are tied (samples = (frames - kernel_size + 1) * hop_length), an upsampling network
of convolutions, batch norms and ``repeat_interleave``, two GRUs from zero states, and
Linear heads over concatenated features. Its inputs' shapes are given, as no module fixes
them. Expected values are the module's own ``forward`` run by torch."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from torch import Tensor, nn  # noqa: E402

from xframe_bilstm import compare, torch_to_keras  # noqa: E402

from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


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


FRAMES, HOP, FREQ = 10, 4, 8
SHAPES = [(1, (FRAMES - 4) * HOP), (1, FREQ, FRAMES)]  # kernel_size 5: 4 frames fewer


def _small() -> WaveRNN:
    torch.manual_seed(81)
    module = WaveRNN(
        upsample_scales=[2, 2], n_classes=8, hop_length=HOP, n_res_block=1, n_rnn=16,
        n_fc=16, kernel_size=5, n_freq=FREQ, n_hidden=8, n_output=8,
    )  # fmt: skip
    waveform, specgram = (torch.randn(4, *shape) for shape in SHAPES)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)  # a few steps: trained weights
    for _ in range(3):
        optimizer.zero_grad()
        module(waveform, specgram).square().mean().backward()
        optimizer.step()
    return module.eval()


def _inputs(batch: int) -> list[np.ndarray]:
    rng = np.random.default_rng(8)
    return [rng.standard_normal((batch, *shape)).astype("float32") for shape in SHAPES]


def test_wavernn_ports_whole_at_the_shapes_given() -> None:
    module = _small()
    model = torch_to_keras(module, input_shape=SHAPES)  # checked against module(w, s)
    assert [tuple(tensor.shape) for tensor in model.inputs] == [(None, *s) for s in SHAPES]
    report = compare(module, against=model, inputs=_inputs(3), frameworks=[])
    assert report, "\n".join(report.lines())


def test_wavernn_agrees_on_every_framework_on_the_inputs_given() -> None:
    assert_agrees_everywhere(_small(), inputs=_inputs(2))
