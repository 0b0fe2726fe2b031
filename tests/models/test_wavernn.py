"""torchaudio 2.11's WaveRNN vocoder, as the package defines it (:mod:`tests.packaged_models`):
``forward(waveform, specgram)`` of two inputs whose
lengths are tied (samples = (frames - kernel_size + 1) * hop_length), an upsampling network
of convolutions, batch norms and ``repeat_interleave``, two GRUs from zero states, and
Linear heads over concatenated features. Its inputs' shapes are given, as no module fixes
them. Expected values are the module's own ``forward`` run by torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import compare, torch_to_keras  # noqa: E402

from ..packaged_models import WaveRNN  # noqa: E402
from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


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
