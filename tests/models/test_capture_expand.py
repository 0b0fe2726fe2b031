"""A tensor broadcast over another tensor's steps in a captured ``forward``: a speaker id per
row joined to every frame, a latent code repeated over a decoder's steps, an encoder's
summary joined to every target step. Expected values are the module's own ``forward`` run
by torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, keras_to_torch, torch_to_keras  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn
RNG = np.random.default_rng(0)
FRAMES = RNG.standard_normal((3, 7, 6)).astype("float32")


class SpeakerLSTM(nn.Module):
    """Frames, and one speaker id per row embedded and joined to every frame."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(81)
        self.speaker = nn.Embedding(10, 4)
        self.lstm = nn.LSTM(6 + 4, 8, batch_first=True)
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        s = self.speaker(speaker).unsqueeze(1).expand(-1, x.size(1), -1)
        return self.out(self.lstm(torch.cat([x, s], -1))[0])


class LatentDecoder(nn.Module):
    """A VAE's decoder: a latent code per row, projected and repeated over the steps of
    the teacher-forced input (``repeat``), read by a GRU."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(82)
        self.project = nn.Linear(5, 4)
        self.gru = nn.GRU(6 + 4, 7, batch_first=True)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        code = torch.tanh(self.project(z)).unsqueeze(1).repeat(1, x.shape[1], 1)
        return self.gru(torch.cat([code, x], dim=2))[0]


class ContextDecoder(nn.Module):
    """Cho et al.'s encoder–decoder: the encoder's final state joined to every target step,
    its length the target's."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(83)
        self.embed = nn.Embedding(20, 5)
        self.encoder = nn.GRU(5, 6, batch_first=True)
        self.decoder = nn.GRU(5 + 6, 6, batch_first=True)
        self.out = nn.Linear(6, 20)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        _, h = self.encoder(self.embed(src))
        target = self.embed(tgt)
        context = h[-1].unsqueeze(1).expand(-1, target.size(1), -1)
        return self.out(self.decoder(torch.cat([target, context], 2))[0])


class FixedSteps(nn.Module):
    """A summary repeated over a fixed number of steps, as ``RepeatVector`` does."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(84)
        self.encoder = nn.LSTM(6, 5, batch_first=True)
        self.decoder = nn.LSTM(5, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        summary = self.encoder(x)[0][:, -1:]
        return self.decoder(summary.expand(-1, 4, -1))[0]


def _torch(module: nn.Module, *inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(*(torch.as_tensor(x) for x in inputs)).numpy()


def test_a_speaker_id_per_row_joins_every_frame(tmp_path) -> None:
    module = SpeakerLSTM().eval()
    speakers = np.array([1, 4, 9])
    report = assert_agrees_everywhere(module, inputs=[FRAMES, speakers])
    assert report.header()[1].startswith("inputs x (3, 7, 6), speaker (3,)")
    port = torch_to_keras(module, input_shape=[(None, 6), ()])  # checked against forward
    assert [tuple(i.shape) for i in port.inputs] == [(None, None, 6), (None,)]
    longer, ids = RNG.standard_normal((2, 12, 6)).astype("float32"), np.array([0, 7])
    got = np.asarray(port([longer, ids]))
    np.testing.assert_allclose(got, _torch(module, longer, ids), atol=1e-5)
    path = tmp_path / "speaker.keras"
    port.save(path)
    back = keras_to_torch(path)  # checked against the model Keras loads
    with torch.no_grad():
        again = back(torch.as_tensor(longer), torch.as_tensor(ids)).numpy()
    np.testing.assert_allclose(again, got, atol=1e-5)


def test_a_speaker_id_is_not_read_as_lengths() -> None:
    graph = graph_from_torch(SpeakerLSTM(), example_shapes=[(7, 6), ()])
    assert [graph.layer(name).options["dtype"] for name in graph.inputs] == ["float32", "int64"]
    assert not any(map(graph.holds_lengths, graph.inputs))
    (expand,) = [r for r in graph.layers if r.kind == "expand"]
    assert expand.options["sizes"] == (None, -1) and expand.inputs[1] == "x"


@pytest.mark.parametrize(
    ("make", "inputs"),
    [
        (LatentDecoder, [FRAMES, RNG.standard_normal((3, 5)).astype("float32")]),
        (ContextDecoder, [RNG.integers(1, 20, (3, 8)), RNG.integers(1, 20, (3, 5))]),
        (FixedSteps, [FRAMES]),
    ],
)
def test_vectors_repeated_over_steps_agree_on_every_framework(make, inputs) -> None:
    assert_agrees_everywhere(make().eval(), inputs=inputs)


def test_repeating_an_axis_longer_than_one_is_refused_by_name() -> None:
    class Tiled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(6, 5, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(x.repeat(1, 2, 1))[0]

    with pytest.raises(UnsupportedFeatureError, match="repeat repeating axis 1 of size"):
        torch_to_keras(Tiled())


class OtherLength(nn.Module):
    """A vector expanded to the source's length beside the target's embedding, which the
    port, captured with both at one length, reads the length from."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(85)
        self.embed = nn.Embedding(20, 4)
        self.encoder = nn.GRU(4, 4, batch_first=True)
        self.decoder = nn.GRU(4, 3, batch_first=True)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, ...]:
        source, target = self.embed(src), self.embed(tgt)
        _, h = self.encoder(target)
        return self.decoder(h[-1].unsqueeze(1).expand(-1, src.size(1), -1))[0], source


def test_a_length_read_from_the_wrong_input_is_refused_not_ported() -> None:
    with pytest.raises(UnsupportedFeatureError, match="reads a length from another input"):
        torch_to_keras(OtherLength().eval(), input_shape=[(None,), (None,)])
    port = torch_to_keras(OtherLength().eval(), input_shape=[(7,), (9,)])  # every size given
    src, tgt = RNG.integers(1, 20, (2, 7)), RNG.integers(1, 20, (2, 9))
    got = [np.asarray(y) for y in port([src, tgt])]
    with torch.no_grad():
        want = [y.numpy() for y in OtherLength().eval()(torch.as_tensor(src), torch.as_tensor(tgt))]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)
