"""torch.onnx exports of models of several inputs, read through the module that runs their
nodes: an encoder–decoder ``forward(src, tgt)``, a tagger packing its rows by the lengths
beside them (sorted by ``TopK`` and put back, or given sorted), and a per-row id beside
the frames. Expected values come from onnxruntime on the exported graph."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm import compare, onnx_to_keras, onnx_to_torch  # noqa: E402
from xframe_bilstm.adapters.onnx.sorted_rows import sorted_rows  # noqa: E402
from xframe_bilstm.graph import ModelGraph  # noqa: E402
from xframe_bilstm.models.from_onnx import declared_inputs  # noqa: E402
from xframe_bilstm.sources import read_source  # noqa: E402

from ..onnx_exports import torch_export  # noqa: E402
from ..tutorial_models import ChatbotAttentionDecoder  # noqa: E402

pytestmark = pytest.mark.torch
nn = torch.nn
pack, pad = nn.utils.rnn.pack_padded_sequence, nn.utils.rnn.pad_packed_sequence
VOCAB = 30


class Seq2Seq(nn.Module):
    """The encoder's final (h, c) start the decoder on the target ids."""

    def __init__(self) -> None:
        super().__init__()
        self.source = nn.Embedding(VOCAB, 6)
        self.target = nn.Embedding(VOCAB, 6)
        self.encoder = nn.LSTM(6, 8, num_layers=2, batch_first=True)
        self.decoder = nn.LSTM(6, 8, num_layers=2, batch_first=True)
        self.out = nn.Linear(8, VOCAB)

    def forward(self, src: Any, tgt: Any) -> Any:
        _, states = self.encoder(self.source(src))
        return self.out(self.decoder(self.target(tgt), states)[0])


class PackedTagger(nn.Module):
    """Embedding → packed BiGRU (rows in any order, or sorted longest first) → Linear."""

    def __init__(self, enforce_sorted: bool = False) -> None:
        super().__init__()
        self.enforce_sorted = enforce_sorted
        self.embedding = nn.Embedding(VOCAB, 6)
        self.gru = nn.GRU(6, 5, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(10, 4)

    def forward(self, ids: Any, lengths: Any) -> Any:
        packed = pack(self.embedding(ids), lengths, True, self.enforce_sorted)
        out, _ = pad(self.gru(packed)[0], batch_first=True, total_length=ids.size(1))
        return self.fc(out)


class Speakers(nn.Module):
    """Frames and one speaker id per row: the speaker's embedding beside every frame."""

    def __init__(self) -> None:
        super().__init__()
        self.speaker = nn.Embedding(4, 3)
        self.lstm = nn.LSTM(8 + 3, 6, batch_first=True)

    def forward(self, frames: Any, speaker: Any) -> Any:
        voice = self.speaker(speaker)[:, None].expand(-1, frames.size(1), -1)
        return self.lstm(torch.cat([frames, voice], dim=-1))[0]


def _ids(rng: np.random.Generator, batch: int, steps: int) -> np.ndarray:
    return rng.integers(1, VOCAB, (batch, steps)).astype(np.int64)


def _tagger_inputs(rng: np.random.Generator, sorted_rows_: bool) -> tuple[np.ndarray, ...]:
    ids = _ids(rng, 4, 9)
    lengths = np.array([9, 4, 7, 2] if not sorted_rows_ else [9, 7, 4, 2], np.int64)
    ids[np.arange(9) >= lengths[:, None]] = 0
    return ids, lengths


# name -> (model, its inputs, their names, their dynamic axes)
def _cases() -> dict[str, tuple[Any, tuple[np.ndarray, ...], tuple[str, ...], list[Any]]]:
    rng = np.random.default_rng(0)
    ids_axes = {0: "b", 1: "t"}
    return {
        "seq2seq": (
            Seq2Seq,
            (_ids(rng, 3, 7), _ids(rng, 3, 5)),
            ("src", "tgt"),
            [ids_axes, {0: "b", 1: "u"}],
        ),
        "packed_unsorted": (
            PackedTagger,
            _tagger_inputs(rng, False),
            ("ids", "lengths"),
            [ids_axes, {0: "b"}],
        ),
        "packed_sorted": (
            lambda: PackedTagger(enforce_sorted=True),
            _tagger_inputs(rng, True),
            ("ids", "lengths"),
            [ids_axes, {0: "b"}],
        ),
        "speakers": (
            Speakers,
            (rng.standard_normal((3, 6, 8)).astype(np.float32), np.array([3, 0, 1])),
            ("frames", "speaker"),
            [ids_axes, {0: "b"}],
        ),
    }


CASES = _cases()


def _export(name: str, directory: Path) -> Path:
    make, inputs, names, axes = CASES[name]
    torch.manual_seed(0)
    path = directory / f"{name}.onnx"
    tensors = tuple(torch.from_numpy(a) for a in inputs)
    torch_export(make().eval(), tensors, axes, names=names, outputs=["y"], path=path, opset=17)
    return path


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request: Any, tmp_path_factory: Any) -> tuple[str, Path]:
    return request.param, _export(request.param, tmp_path_factory.mktemp("onnx"))


def _expected(path: Path, inputs: tuple[np.ndarray, ...], names: tuple[str, ...]) -> Any:
    (y,) = ort.InferenceSession(str(path)).run(None, dict(zip(names, inputs)))
    return y


def test_compare_runs_the_graph_on_its_inputs(exported: tuple[str, Path]) -> None:
    name, path = exported
    _, inputs, names, _ = CASES[name]
    read = read_source(path)
    assert isinstance(read.reading, ModelGraph)
    lengths = name.startswith("packed")
    # Several data inputs take the graph's names; one beside the lengths is "input".
    assert read.reading.inputs == (("input", "lengths") if lengths else names)
    assert any(map(read.reading.holds_lengths, read.reading.inputs)) == lengths
    frameworks = ["torch", "keras", "onnxruntime"]
    if importlib.util.find_spec("onnxscript") is not None:
        frameworks.append("torch-onnx-dynamo")  # outputs named as its values: still valid
    report = compare(path, inputs=list(inputs), frameworks=frameworks)
    assert report, report.lines()
    assert "onnxruntime[cpu,float32]@original" in {pair.expected for pair in report.pairs}
    assert compare(path, frameworks=["torch"])  # inputs made from what the graph declares


def test_the_converters_take_every_input(exported: tuple[str, Path]) -> None:
    name, path = exported
    _, inputs, names, _ = CASES[name]
    expected = _expected(path, inputs, names)
    model = onnx_to_keras(path)  # checked against onnxruntime on the graph
    assert len(model.inputs) == len(inputs)
    np.testing.assert_allclose(np.asarray(model(list(inputs))), expected, atol=1e-5)
    module = onnx_to_torch(path)
    with torch.no_grad():
        got = module(*(torch.from_numpy(a) for a in inputs)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("name", ["packed_unsorted", "packed_sorted"])
def test_the_lengths_decide_the_padded_steps(name: str, tmp_path: Path) -> None:
    """Read with its lengths, the port gives the graph's outputs for other lengths too,
    which differ from the full rows': the lengths are read, not their example's."""
    path = _export(name, tmp_path)
    ids, lengths = CASES[name][1]
    shorter = np.maximum(lengths - 1, 1)
    expected = _expected(path, (ids, shorter), ("ids", "lengths"))
    assert not np.allclose(expected, _expected(path, (ids, lengths), ("ids", "lengths")))
    model = onnx_to_keras(path)
    np.testing.assert_allclose(np.asarray(model([ids, shorter])), expected, atol=1e-5)


def test_the_declared_inputs_try_a_rank_one_integer_input_as_lengths_first(
    exported: tuple[str, Path],
) -> None:
    name, path = exported
    guesses = declared_inputs(onnx.load(str(path)))
    assert guesses is not None
    if name == "seq2seq":  # ids of a length each: no lengths among them
        assert [g.lengths_at for g in guesses] == [(), ()]
    else:
        assert [g.lengths_at for g in guesses] == [(1,), (), ()]
    assert guesses[-1].names == CASES[name][2]
    # last, the inputs whose batch and time are dynamic taken time-major
    assert [o.get("batch_axis", 0) == 1 for o in guesses[-1].options] == [
        o["shape"][:1] == (None,) for o in guesses[-2].options
    ]


@pytest.mark.parametrize("left", ["sorting", "putting back"])
def test_the_sort_by_lengths_is_found_only_where_rows_are_sorted_and_put_back(
    left: str,
) -> None:
    """With the ``Gather`` that sorts the rows, or the one that puts them back, taken out
    (its input passed on), the rows' order is not undone: nothing is taken as a sort."""
    make, inputs, names, axes = CASES["packed_unsorted"]
    tensors = tuple(torch.from_numpy(a) for a in inputs)
    proto = torch_export(make().eval(), tensors, axes, names=names, opset=17)
    found = sorted_rows(proto.graph)
    assert len(found.lengths) == 1 and len(found.reordered) == 2  # sorted, and back
    inverses = {n.output[0] for n in proto.graph.node if n.op_type == "ScatterElements"}
    (cut,) = [
        n
        for n in proto.graph.node
        if n.output[0] in found.reordered and (n.input[1] in inverses) == (left == "putting back")
    ]
    kept = [n for n in proto.graph.node if n is not cut]
    for node in kept:
        node.input[:] = [cut.input[0] if i == cut.output[0] else i for i in node.input]
    del proto.graph.node[:]
    proto.graph.node.extend(kept)
    assert sorted_rows(proto.graph).lengths == {}


def test_the_recurrent_records_are_named_after_the_graph_nodes(
    exported: tuple[str, Path],
) -> None:
    """As a diagnosis names them: "layer 'encoder_LSTM' (LSTM)", not the interpreter's."""
    _, path = exported
    proto = onnx.load(str(path))
    nodes = [n.name for n in proto.graph.node if n.op_type in ("LSTM", "GRU")]
    graph = read_source(path).reading
    recurrent = [record.name for record in graph.layers if record.kind == "recurrent"]
    assert recurrent == [n.strip("/").replace("/", "_") for n in nodes]
    assert graph.source == f"ONNX graph {proto.graph.name!r}"


def test_a_packed_tagger_exported_for_one_batch_size_reads_at_any(tmp_path: Path) -> None:
    """No dynamic axes: the rows' sort is put back by a ``ScatterElements`` of the constant
    positions 0 .. 3 into constant zeros, made at the batch's size when freed."""
    make, inputs, names, _ = CASES["packed_unsorted"]
    torch.manual_seed(0)
    tensors = tuple(torch.from_numpy(a) for a in inputs)
    path = tmp_path / "fixed.onnx"
    proto = torch_export(make().eval(), tensors, [None, None], names=names, path=path, opset=17)
    assert "ScatterElements" in {node.op_type for node in proto.graph.node}
    report = compare(path, inputs=list(inputs), frameworks=["torch", "onnxruntime"])
    assert report, report.lines()
    assert report.input_shape == inputs[0].shape


class CountingTagger(PackedTagger):
    """The tagger given its ids alone, packing by its count of non-padding ids per row."""

    def forward(self, ids: Any) -> Any:  # type: ignore[override]
        return super().forward(ids, (ids != 0).sum(1))


@pytest.mark.parametrize("axes", [{0: "b", 1: "t"}, None], ids=["dynamic", "one_batch_size"])
def test_a_tagger_counting_its_lengths_from_its_ids_reads_whole(
    axes: dict[int, str] | None, tmp_path: Path
) -> None:
    """The graph sorts the rows by lengths it computes: read as the count of each row's
    steps, a padding id inside a row included (the first ``count`` steps are packed)."""
    torch.manual_seed(0)
    ids, _ = _tagger_inputs(np.random.default_rng(1), False)
    ids[0, 3] = 0  # inside the row: 8 steps are packed, the last one among them
    path = tmp_path / "counting.onnx"
    torch_export(CountingTagger().eval(), torch.from_numpy(ids), axes, names=["ids"], path=path)
    read = read_source(path)
    assert isinstance(read.reading, ModelGraph) and read.reading.inputs == ("input",)
    report = compare(path, inputs=ids, frameworks=["torch", "keras", "onnxruntime"])
    assert report, report.lines()
    assert "onnxruntime[cpu,float32]@original" in {pair.expected for pair in report.pairs}
    module = onnx_to_torch(path)
    with torch.no_grad():
        got = module(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(got, _expected(path, (ids,), ("ids",)), atol=1e-5)


class DecoderStep(nn.Module):
    """One decoder step: a token id per row and the states (layers, batch, units)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 6)
        self.rnn = nn.GRU(6, 5, num_layers=2)
        self.fc = nn.Linear(5, VOCAB)

    def forward(self, input: Any, hidden: Any) -> Any:
        output, hidden = self.rnn(self.embedding(input.unsqueeze(0)), hidden)
        return self.fc(output.squeeze(0)), hidden


def test_a_decoder_steps_states_are_read_as_torch_stacks_them(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module, rng = DecoderStep().eval(), np.random.default_rng(2)
    ids, hidden = rng.integers(0, VOCAB, 3), rng.standard_normal((2, 3, 5)).astype(np.float32)
    path = tmp_path / "step.onnx"
    tensors = (torch.from_numpy(ids), torch.from_numpy(hidden))
    torch_export(module, tensors, [{0: "b"}, {1: "b"}], names=["input", "hidden"], path=path)
    (guess, *_) = declared_inputs(onnx.load(str(path)))
    assert guess.options[1] == {"shape": (2, 5), "dtype": "float32", "batch_axis": 1}
    report = compare(path, frameworks=["torch", "keras", "onnxruntime"])
    assert report, report.lines()
    assert "onnxruntime[cpu,float32]@original" in {pair.expected for pair in report.pairs}
    expected = ort.InferenceSession(str(path)).run(None, {"input": ids, "hidden": hidden})
    got = onnx_to_keras(path)([ids, hidden])
    for mine, theirs in zip(got, expected, strict=True):
        np.testing.assert_allclose(np.asarray(mine), theirs, atol=1e-5)


def test_an_attention_decoders_step_is_read_with_every_batch_second(tmp_path: Path) -> None:
    """The chatbot tutorial's decoder: ids (1, batch) first, its axis named for the batch,
    then the states (layers, batch, units) and the encoder's outputs (time, batch, units)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    arrays = (
        rng.integers(0, 20, (1, 3)),
        *(rng.standard_normal(shape).astype(np.float32) for shape in ((2, 3, 6), (5, 3, 6))),
    )
    path = tmp_path / "decoder.onnx"
    axes = [{1: "batch"}, {1: "batch"}, {0: "time", 1: "batch"}]
    names = ["input_step", "last_hidden", "encoder_outputs"]
    tensors = tuple(map(torch.from_numpy, arrays))
    torch_export(ChatbotAttentionDecoder().eval(), tensors, axes, names=names, path=path)
    guesses = declared_inputs(onnx.load(str(path)))
    assert guesses is not None and [o.get("batch_axis") for o in guesses[-1].options] == [1] * 3
    report = compare(path, frameworks=["torch", "keras", "onnxruntime"])
    assert report, report.lines()
    assert "onnxruntime[cpu,float32]@original" in {pair.expected for pair in report.pairs}
