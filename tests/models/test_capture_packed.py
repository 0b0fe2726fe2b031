"""torch modules whose ``forward(x, lengths)`` packs its padded rows: ``pack_padded_sequence``
read as a mask from the lengths, ``pad_packed_sequence`` as its end. Expected values are
``module(x, lengths)``, run by torch on right-padded rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

from xframe_bilstm import (  # noqa: E402
    UnsupportedFeatureError,
    WeightShapeError,
    compare,
    keras_to_torch,
    to_onnx,
    torch_to_keras,
)
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from ..packaged_models import TacotronEncoder  # noqa: E402
from ..tutorial_models import ChatbotEncoder  # noqa: E402
from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn
IDS = np.random.default_rng(0).integers(1, 30, size=(4, 9))
LENGTHS = np.array([9, 4, 7, 1])  # unsorted: packed with enforce_sorted=False


class Tagger(nn.Module):
    """Embedding → packed 2-layer BiLSTM → padded → Linear per step, plus the last layer's
    backward h (the tutorials' tagger, ``from torch.nn.utils.rnn import ...``)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(30, 6)
        self.lstm = nn.LSTM(6, 5, num_layers=2, batch_first=True, bidirectional=True)
        self.out = nn.Linear(10, 3)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        packed = pack_padded_sequence(
            self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        output, (h, _) = self.lstm(packed)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=ids.size(1))
        return self.out(output), h[-1]


class TimeMajorClassifier(nn.Module):
    """Features transposed time-major, packed time-major (``nn.utils.rnn.`` spelled out)
    into a GRU, its last h classified: rows sorted longest first, as packing wants."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.gru = nn.GRU(3, 4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(x.transpose(0, 1), lengths)
        _, h = self.gru(packed)
        return self.fc(h[-1])


class TwoPacked(nn.Module):
    """A packed LSTM's output, still packed, into a second LSTM; then attention over the
    padded result, which must not see the mask (torch's does not)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.first = nn.LSTM(3, 4, batch_first=True)
        self.second = nn.LSTM(4, 4, batch_first=True)
        self.attention = nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        output, _ = pad_packed_sequence(self.second(self.first(packed)[0])[0], batch_first=True)
        return self.attention(output, output, output, need_weights=False)[0]


def _expected(module: nn.Module, x: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        result = module(torch.as_tensor(x), torch.as_tensor(lengths))
    return [t.numpy() for t in (result if isinstance(result, tuple) else (result,))]


def _check(model, module: nn.Module, x: np.ndarray, lengths: np.ndarray) -> None:
    got = model([x, lengths])
    got = got if isinstance(got, (list, tuple)) else [got]
    for mine, theirs in zip(got, _expected(module, x, lengths), strict=True):
        np.testing.assert_allclose(np.asarray(mine), theirs, rtol=0, atol=2e-5)


def test_a_packed_tagger_ports_with_its_lengths_as_second_input(tmp_path: Path) -> None:
    module = Tagger().eval()
    graph = graph_from_torch(module)
    assert graph.inputs == ("input", "lengths")
    kinds = [record.kind for record in graph.layers]
    assert kinds.index("lengths_mask") < kinds.index("recurrent") < kinds.index("end_mask")
    model = torch_to_keras(module)  # verified against module(ids, lengths)
    _check(model, module, IDS, LENGTHS)
    # padded steps: the Linear of zeros, as pad_packed_sequence fills them
    y = np.asarray(model([IDS, LENGTHS])[0])
    np.testing.assert_allclose(y[3, 1:], np.broadcast_to(module.out.bias.detach(), (8, 3)))
    # and back: the saved Keras port reads back, ports to torch and compares
    path = tmp_path / "tagger.keras"
    model.save(path)
    back = keras_to_torch(path)
    with torch.no_grad():
        ported = back(torch.as_tensor(IDS), torch.as_tensor(LENGTHS))
    for mine, theirs in zip(ported, _expected(module, IDS, LENGTHS), strict=True):
        np.testing.assert_allclose(mine.numpy(), theirs, rtol=0, atol=2e-5)


def test_compare_runs_every_framework_on_padded_rows() -> None:
    report = compare(Tagger().eval(), frameworks=["torch", "keras", "onnxruntime"], steps=8)
    assert report, report.lines()


def test_compare_takes_the_lengths_as_an_input() -> None:
    report = compare(Tagger().eval(), inputs=[IDS, LENGTHS], frameworks=["torch", "keras"])
    assert report, report.lines()
    with pytest.raises(WeightShapeError, match=r"inputs \(lengths\): expected the rows' lengths"):
        compare(Tagger().eval(), inputs=[IDS, LENGTHS.astype(float)], frameworks=["torch"])


def test_time_major_packing_of_sorted_rows() -> None:
    module = TimeMajorClassifier().eval()
    model = torch_to_keras(module)
    x = np.random.default_rng(1).standard_normal((3, 6, 3)).astype("float32")
    _check(model, module, x, np.array([6, 3, 2]))


def test_a_packed_output_packed_on_and_attention_after_the_padding(tmp_path: Path) -> None:
    module = TwoPacked().eval()
    model = torch_to_keras(module)
    x = np.random.default_rng(2).standard_normal((3, 5, 3)).astype("float32")
    _check(model, module, x, np.array([5, 2, 4]))
    model = to_onnx(module, tmp_path / "two.onnx")  # checked against the module on onnxruntime
    assert [i.name for i in model.graph.input] == ["input", "lengths"]
    assert (tmp_path / "two.onnx").exists()


class CountedTagger(nn.Module):
    """A tagger given its ids alone, packing by the count of non-padding ids of each row."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.embedding = nn.Embedding(30, 6, padding_idx=0)
        self.lstm = nn.LSTM(6, 5, batch_first=True, bidirectional=True)
        self.out = nn.Linear(10, 3)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = (ids != 0).sum(1)
        packed = pack_padded_sequence(
            self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        output, (h, _) = self.lstm(packed)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=ids.size(1))
        return self.out(output), h[-1]


def test_lengths_counted_in_forward_mask_the_steps_torch_packs() -> None:
    module = CountedTagger().eval()
    graph = graph_from_torch(module)
    (packing,) = [record for record in graph.layers if record.kind == "lengths_mask"]
    assert graph.inputs == ("input",) and packing.inputs[1] != "input"  # computed, not given
    assert graph.name == "countedtagger"  # not the name of the ids' mask made numbers
    ids = IDS.copy()
    ids[1, 4:] = 0
    ids[2, 2] = 0  # a padding id inside a row: torch packs its first 8 steps, this one too
    valid = np.arange(9) < (ids != 0).sum(1)[:, None]
    assert valid[2, 2] and not valid[2, 8]
    model = torch_to_keras(module)  # checked against module(ids) on drawn rows
    with torch.no_grad():
        expected = [t.numpy() for t in module(torch.as_tensor(ids))]
    for mine, theirs in zip(model(ids), expected, strict=True):
        np.testing.assert_allclose(np.asarray(mine), theirs, rtol=0, atol=2e-5)
    assert_agrees_everywhere(module, inputs=ids)


def test_time_major_ids_packed_by_their_lengths() -> None:
    torch.manual_seed(5)
    module = ChatbotEncoder().eval()
    model = torch_to_keras(module)  # checked against module(ids, lengths)
    assert [tuple(t.shape) for t in model.inputs] == [(None, None), (None,)]
    lengths = np.array([9, 7, 4, 1])  # longest first, as packing them as given wants
    ids = IDS.T.copy()  # (time, batch)
    ids[np.arange(9)[:, None] >= lengths] = 0
    with torch.no_grad():
        expected = [t.numpy() for t in module(torch.as_tensor(ids), torch.as_tensor(lengths))]
    for mine, theirs in zip(model([ids, lengths]), expected, strict=True):
        np.testing.assert_allclose(np.asarray(mine), theirs, rtol=0, atol=2e-5)
    assert_agrees_everywhere(module)


class ReadsData(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths, batch_first=True)
        return self.lstm(packed)[0].data


class MaskedMean(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths, batch_first=True)
        output, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True)
        return output.sum(1) / lengths[:, None]


class PaddedWithOnes(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths, batch_first=True)
        return pad_packed_sequence(self.lstm(packed)[0], batch_first=True, padding_value=1.0)[0]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (ReadsData, "reads a packed sequence's 'data'"),
        (MaskedMean, r"computes with the lengths \(aten\.\w+\); only pack_padded_sequence"),
        (PaddedWithOnes, "pads a packed sequence with 1.0; the port's padded steps are 0"),
    ],
)
def test_other_uses_of_packing_are_refused_by_name(make, message: str) -> None:
    with pytest.raises(UnsupportedFeatureError, match=message):
        torch_to_keras(make().eval())


def test_tacotron2s_encoder_trained_ports_whole() -> None:
    torch.manual_seed(3)
    module = TacotronEncoder(dim=16)
    x, lengths = torch.randn(4, 16, 11), torch.tensor([11, 9, 6, 2])
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    for _ in range(5):  # a few steps: trained weights and running statistics
        optimizer.zero_grad()
        module(x, lengths).square().mean().backward()
        optimizer.step()
    module.eval()
    model = torch_to_keras(module)  # the input guessed from the first Conv1d: (16, T)
    given = np.random.default_rng(3).standard_normal((3, 16, 14)).astype("float32")
    report = compare(module, against=model, inputs=[given, np.array([14, 10, 3])])
    assert report, "\n".join(report.lines())
    assert any("@against" in line for line in report.lines())


class SortedByHand(nn.Module):
    """Rows sorted by their lengths before packing and put back after, as code written
    before ``enforce_sorted=False`` does: output and states both put back."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.embedding = nn.Embedding(30, 6)
        self.lstm = nn.LSTM(6, 5, batch_first=True, bidirectional=True)
        self.out = nn.Linear(10, 3)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        lengths, order = lengths.sort(0, descending=True)
        packed = pack_padded_sequence(self.embedding(ids[order]), lengths.cpu(), batch_first=True)
        output, (h, _) = self.lstm(packed)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=ids.size(1))
        _, back = order.sort(0)
        return self.out(output)[back], torch.cat([h[-2], h[-1]], dim=1)[back]


class ArgsortedTimeMajor(nn.Module):
    """``argsort`` and ``index_select``, packed time-major; the final h put back."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.gru = nn.GRU(3, 4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        order = torch.argsort(lengths, descending=True)
        steps = x.index_select(0, order).transpose(0, 1)
        _, h = self.gru(pack_padded_sequence(steps, lengths[order].cpu()))
        return self.fc(h[-1][order.argsort()])


def test_rows_sorted_and_put_back_in_forward_compute_nothing() -> None:
    for module in (SortedByHand().eval(), ArgsortedTimeMajor().eval()):
        graph = graph_from_torch(module)
        assert not graph.layer("lengths").options.get("descending")  # drawn in any order
        model = torch_to_keras(module)  # checked on rows not sorted by their lengths
        x = IDS if isinstance(module, SortedByHand) else IDS[..., None] * np.ones(3, "float32")
        _check(model, module, x.astype(IDS.dtype if x is IDS else "float32"), LENGTHS)


def test_lengths_packed_as_given_with_enforce_sorted_are_drawn_longest_first() -> None:
    from xframe_bilstm.inputs import example_inputs

    graph = graph_from_torch(TimeMajorClassifier().eval())
    assert graph.layer("lengths").options["descending"]
    lengths = example_inputs(graph, batch=4, steps=7)[1]
    assert lengths.tolist() == sorted(lengths.tolist(), reverse=True)
    unsorted = example_inputs(graph_from_torch(Tagger().eval()), batch=4, steps=7)[1]
    assert unsorted[0] == 7 and unsorted.tolist() != sorted(unsorted.tolist(), reverse=True)


class NotPutBack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths, order = lengths.sort(descending=True)
        return self.gru(pack_padded_sequence(x[order], lengths, batch_first=True))[1][-1]


class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths, order = lengths.sort(descending=True)
        packed = pack_padded_sequence(x[order], lengths, batch_first=True)
        return self.gru(packed)[1][-1] + x[:, 0, :1]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (NotPutBack, "returns rows in the order sorting by the lengths gave them"),
        (Mixed, "to rows sorted by their lengths and rows in input order"),
    ],
)
def test_rows_left_sorted_are_refused_by_name(make, message: str) -> None:
    with pytest.raises(UnsupportedFeatureError, match=message):
        torch_to_keras(make().eval())


class MeanOverValidSteps(nn.Module):
    """A classifier of the mean over each row's valid steps, divided by hand by the
    lengths made numbers (as a column, or made numbers first)."""

    def __init__(self, column_first: bool) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.column_first = column_first
        self.embedding = nn.Embedding(30, 6)
        self.gru = nn.GRU(6, 4, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(
            self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        output, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True)
        if self.column_first:
            return self.fc(output.sum(1) / lengths.unsqueeze(1).float())
        return self.fc(output.sum(dim=1) / lengths.float().view(-1, 1))


@pytest.mark.parametrize("column_first", [True, False])
def test_a_mean_over_the_valid_steps_divided_by_the_lengths(column_first: bool) -> None:
    module = MeanOverValidSteps(column_first).eval()
    assert "valid_steps" in [r.kind for r in graph_from_torch(module).layers]
    _check(torch_to_keras(module), module, IDS, LENGTHS)
    report = compare(module, frameworks=["torch", "keras", "onnxruntime"])
    assert report, "\n".join(report.lines())


class LengthsAttention(nn.Module):
    """Attention pooling masked by a mask built from the lengths, plus the masked mean it
    weighs by hand: ``arange < lengths[:, None]`` negated for ``masked_fill``, unsqueezed
    and summed as numbers."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.embedding = nn.Embedding(30, 6)
        self.gru = nn.GRU(6, 4, batch_first=True, bidirectional=True)
        self.score = nn.Linear(8, 1)
        self.fc = nn.Linear(8, 3)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        steps = self.gru(self.embedding(ids))[0]
        mask = torch.arange(ids.size(1), device=ids.device)[None, :] < lengths[:, None]
        scores = self.score(steps).squeeze(-1).masked_fill(~mask, float("-inf"))
        pooled = (steps * torch.softmax(scores, dim=1).unsqueeze(-1)).sum(1)
        mean = (steps * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        return self.fc(pooled + mean)


def test_a_mask_built_from_the_lengths_is_read_as_a_padding_mask() -> None:
    module = LengthsAttention().eval()
    _check(torch_to_keras(module), module, IDS, LENGTHS)
    report = compare(module, frameworks=["torch", "keras", "onnxruntime"])
    assert report, "\n".join(report.lines())


class OffByOne(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = torch.arange(x.size(1))[None, :] <= lengths[:, None]
        return self.gru(x)[0] * mask.unsqueeze(-1)


class LastValidStep(nn.Module):
    """The tutorials' classifier of unpacked padded rows: the output at each row's last
    valid step, ``out[torch.arange(B), lengths - 1]`` (or two steps before it, refused)."""

    def __init__(self, back: int = 1) -> None:
        super().__init__()
        torch.manual_seed(8)
        self.back = back
        self.embedding = nn.Embedding(30, 6)
        self.lstm = nn.LSTM(6, 4, batch_first=True)
        self.fc = nn.Linear(4, 3)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out = self.lstm(self.embedding(ids))[0]
        return self.fc(out[torch.arange(out.size(0)), lengths - self.back])


def test_the_last_valid_step_of_each_row() -> None:
    module = LastValidStep().eval()
    _check(torch_to_keras(module), module, IDS, LENGTHS)
    report = compare(module, frameworks=["torch", "keras", "onnxruntime"])
    assert report, "\n".join(report.lines())


class ChannelsFirstMean(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 3, 1)
        self.gru = nn.GRU(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        steps = self.gru(self.conv(x).transpose(1, 2))[0]
        return steps.sum(1) / lengths[:, None].float()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (OffByOne, r"compares the steps with the lengths \(aten\.le\)"),
        (lambda: LastValidStep(back=2), r"computes with the lengths \(aten\.sub\)"),
        (ChannelsFirstMean, "where the input's axis 1 is not its steps"),
    ],
)
def test_other_computations_with_the_lengths_are_refused_by_name(make, message: str) -> None:
    with pytest.raises(UnsupportedFeatureError, match=message):
        torch_to_keras(make().eval())
