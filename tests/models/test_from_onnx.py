"""torch.onnx exports of models with convolution front ends, read through the module that
runs their nodes: ``compare()`` on the file, ``onnx_to_keras`` of it, and refusals that name
the graph's nodes. Expected values come from onnxruntime on the exported graph."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm import (  # noqa: E402
    UnsupportedFeatureError,
    compare,
    onnx_to_keras,
    onnx_to_torch,
)
from xframe_bilstm.graph import ModelGraph  # noqa: E402
from xframe_bilstm.sources import read_source  # noqa: E402

from ..audio_models import Denoiser, EventDetector, SpectrogramCRN, WavEncoder  # noqa: E402
from ..onnx_exports import torch_export  # noqa: E402

pytestmark = pytest.mark.torch
nn = torch.nn

# name -> (model, an example input, its dynamic axes, record kinds the reading holds)
MODELS = {
    "denoiser": (Denoiser, (2, 1, 164), {0: "b", 2: "t"}, {"conv", "conv_transpose", "slice_to"}),
    "spectrogram_crn": (SpectrogramCRN, (2, 1, 9, 16), {0: "b", 2: "t"}, {"conv_transpose"}),
    "wav_encoder": (WavEncoder, (2, 400), {0: "b", 1: "t"}, {"conv", "group_norm"}),
    "event_detector": (EventDetector, (2, 12, 8), {0: "b", 1: "t"}, {"pool", "repeat"}),
}


def _export(module: Any, x: Any, path: Path, axes: dict | None) -> Path:
    torch_export(module, x, axes, outputs=["y"], path=path, opset=17)
    return path


@pytest.fixture(scope="module", params=sorted(MODELS))
def exported(request: Any, tmp_path_factory: Any) -> tuple[str, Path]:
    make, shape, axes, _ = MODELS[request.param]
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx"
    return request.param, _export(make().eval(), torch.randn(*shape), path, axes)


def _kinds(graph: ModelGraph) -> set[str]:
    return {record.kind for record in graph.layers}


def test_compare_runs_the_export_and_its_reading(exported: tuple[str, Path]) -> None:
    name, path = exported
    read = read_source(path)
    assert isinstance(read.reading, ModelGraph)
    assert {"recurrent", *MODELS[name][3]} <= _kinds(read.reading)
    assert "broadcast" not in _kinds(read.reading)  # torch.onnx's zero initial states: none
    report = compare(path, frameworks=["torch", "onnxruntime"])
    assert report, report.lines()
    labels = {pair.actual for pair in report.pairs} | {pair.expected for pair in report.pairs}
    assert {"onnxruntime[cpu,float32]@original", "torch[cpu,float32]"} <= labels


def test_onnx_to_torch_checks_at_a_length_the_graph_runs(exported: tuple[str, Path]) -> None:
    """The denoiser's and the wav encoder's windows need more samples than the declared
    inputs' 7 steps: the check runs at the reading's length instead."""
    name, path = exported
    module = onnx_to_torch(path)  # checked against onnxruntime on the graph
    shape = list(MODELS[name][1])
    x = np.random.default_rng(2).standard_normal(shape).astype("float32")
    (expected,) = ort.InferenceSession(str(path)).run(None, {"x": x})
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), expected, atol=1e-5)


@pytest.mark.keras
def test_onnx_to_keras_ports_the_whole_graph(exported: tuple[str, Path]) -> None:
    name, path = exported
    model = onnx_to_keras(path, name=name)  # checked against onnxruntime on the graph
    shape = list(MODELS[name][1])
    time_axis = next(axis for axis in MODELS[name][2] if axis)
    shape[0], shape[time_axis] = 3, shape[time_axis] + 12  # another batch and length
    x = np.random.default_rng(1).standard_normal(shape).astype("float32")
    (expected,) = ort.InferenceSession(str(path)).run(None, {"x": x})
    assert model.name == name
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.keras
def test_a_keras_model_computing_something_else_fails_the_check(tmp_path: Path) -> None:
    from xframe_bilstm.errors import ToleranceExceededError
    from xframe_bilstm.inputs import example_inputs
    from xframe_bilstm.onnx_verify import check_model_import

    torch.manual_seed(0)
    x = torch.randn(2, 1, 9, 16)
    path = _export(SpectrogramCRN().eval(), x, tmp_path / "crn.onnx", {0: "b", 2: "t"})
    read = read_source(path)
    model = onnx_to_keras(path, verify=False)
    xs = example_inputs(read.reading, batch=2, steps=11, seed=0)
    check_model_import(read, model, inputs=xs, seed=0)  # as built: it passes
    lstm = next(layer for layer in model.layers if layer.__class__.__name__ == "LSTM")
    kernel, *rest = lstm.get_weights()
    lstm.set_weights([kernel + 0.1, *rest])
    with pytest.raises(ToleranceExceededError, match="computes something else"):
        check_model_import(read, model, inputs=xs, seed=0)


_DYNAMO_EXPORT = """
import sys, torch
sys.path.insert(0, {tests!r})
from audio_models import SpectrogramCRN
torch.manual_seed(0)
time = torch.export.Dim("time", min=2, max=400)
torch.onnx.export(SpectrogramCRN().eval(), (torch.randn(2, 1, 9, 16),), {path!r}, dynamo=True,
                  input_names=["x"], dynamic_shapes=({{0: torch.export.Dim("b"), 2: time}},))
"""


def test_a_dynamo_export_reads_too(tmp_path: Path) -> None:
    """torch.onnx's dynamo exporter (opset 20): its ``Expand`` initial states, ``Slice``
    sizes, and softplus as ``Where(Greater(x, 20), x, Softplus(x))``. Exported in a process
    of its own: after ``torch.export`` has captured a module with an LSTM at fixed sizes
    (as other tests here do), torch 2.13's dynamo exporter fixes the time axis of the
    next export of that class."""
    pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript")
    path = tmp_path / "crn.onnx"
    script = _DYNAMO_EXPORT.format(tests=str(Path(__file__).parents[1]), path=str(path))
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    nodes = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Where" in nodes
    report = compare(path, frameworks=["torch", "onnxruntime"])
    assert report, report.lines()


_DYNAMO_TAGGER = """
import torch
torch.manual_seed(0)
class Tagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(20, 32)
        self.lstm = torch.nn.LSTM(32, 48, num_layers=2, bidirectional=True, batch_first=True)
        self.fc = torch.nn.Linear(96, 3)
    def forward(self, ids):
        return self.fc(self.lstm(self.embedding(ids))[0])
ids = torch.randint(1, 20, (2, 7))
torch.onnx.export(Tagger().eval(), (ids,), {path!r}, dynamo=True, input_names=["ids"],
                  dynamic_shapes=({{0: torch.export.Dim("b"), 1: torch.export.Dim("t")}},))
"""


def test_a_dynamo_export_whose_weights_are_computed_reads(tmp_path: Path) -> None:
    """The dynamo exporter writes an LSTM node's weights reordered to ONNX's gates as
    ``Slice`` nodes and a ``Concat`` of the initializer where they are large (it folds small
    ones): folded into the constant they are, the node runs on torch's own LSTM and the
    capture reads it."""
    pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript")
    path = tmp_path / "tagger.onnx"
    subprocess.run(
        [sys.executable, "-c", _DYNAMO_TAGGER.format(path=str(path))],
        check=True,
        capture_output=True,
    )
    graph = onnx.load(str(path)).graph
    initializers = {i.name for i in graph.initializer}
    lstms = [node for node in graph.node if node.op_type == "LSTM"]
    computed = [n for n in lstms if not {n.input[1], n.input[2]} <= initializers]
    assert len(lstms) == 2 and computed  # W or R computed from the initializer
    read = read_source(path)
    assert [r.kind for r in read.reading.layers].count("recurrent") == 2
    report = compare(path, frameworks=["torch", "keras", "onnxruntime"])
    assert report, report.lines()


class ConvTagger(nn.Module):
    """Token ids, an embedding, a convolution over time, a BiGRU and a Linear: the
    convolution puts it outside the embedding-recurrent-Dense reading."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.embedding = nn.Embedding(20, 6)
        self.conv = nn.Conv1d(6, 6, 3, padding=1)
        self.gru = nn.GRU(6, 4, batch_first=True, bidirectional=True)
        self.out = nn.Linear(8, 5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(self.embedding(ids).transpose(1, 2))).transpose(1, 2)
        return self.out(self.gru(x)[0])


def test_token_ids_read_through_the_table_as_an_embedding(tmp_path: Path) -> None:
    ids = torch.randint(0, 20, (2, 7))
    path = _export(ConvTagger().eval(), ids, tmp_path / "tagger.onnx", {0: "b", 1: "t"})
    read = read_source(path)
    assert {"embedding", "conv", "recurrent", "dense"} <= _kinds(read.reading)
    report = compare(path, frameworks=["torch", "onnxruntime"])
    assert report, report.lines()


class ClippedFront(nn.Module):
    """DeepSpeech's front: Linear layers clipped to [0, 20] (``F.hardtanh``, exported as
    ``Clip`` with its bounds as constant inputs), then a BiLSTM."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.fc = nn.Linear(3, 5)
        self.lstm = nn.LSTM(5, 4, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(nn.functional.hardtanh(self.fc(x) * 10, 0.0, 20.0))[0]


def test_a_clip_to_constant_bounds_reads(tmp_path: Path) -> None:
    path = _export(ClippedFront().eval(), torch.randn(2, 5, 3), tmp_path / "clip.onnx",
                   {0: "b", 1: "t"})  # fmt: skip
    assert compare(path, frameworks=["torch", "onnxruntime"])


class CausalFront(nn.Module):
    """A causal convolution: ``F.pad(h, (2, 0))``, whose pads torch.onnx computes in the
    graph (``ConstantOfShape``, ``Concat``, ``Slice``, ``Transpose``, ``Cast``), then a
    GRU."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(8)
        self.conv = nn.Conv1d(3, 4, 3)
        self.gru = nn.GRU(4, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(nn.functional.pad(x.transpose(1, 2), (2, 0)))
        return self.gru(h.transpose(1, 2))[0]


def test_pads_computed_in_the_graph_are_numbers(tmp_path: Path) -> None:
    path = _export(CausalFront().eval(), torch.randn(2, 6, 3), tmp_path / "causal.onnx",
                   {0: "b", 1: "t"})  # fmt: skip
    assert "Transpose" in {node.op_type for node in onnx.load(str(path)).graph.node}
    assert compare(path, frameworks=["torch", "onnxruntime"])


class ErfFront(nn.Module):
    """``torch.erf`` on its own (no GELU around it) before a GRU."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(torch.erf(x))[0]


def test_what_the_reading_refuses_names_the_graph_node(tmp_path: Path) -> None:
    path = _export(ErfFront().eval(), torch.randn(2, 5, 3), tmp_path / "erf.onnx", {0: "b", 1: "t"})
    expected = r"nodes cannot all be read as layers: applies aten\.erf at Erf node '/Erf'"
    with pytest.raises(UnsupportedFeatureError, match=expected) as refused:
        compare(path)
    assert "submodule=" not in str(refused.value)  # a torch module's advice, not a graph's


class StatisticsPooling(nn.Module):
    """An LSTM's outputs' mean and standard deviation over time (x-vector pooling): the
    export writes ``h.std(1)`` with the number of steps, T / (T - 1), computed in the graph."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.lstm = nn.LSTM(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lstm(x)[0]
        return torch.cat([h.mean(1), h.std(1)], dim=-1)


def test_a_number_the_graph_computes_from_its_length_is_refused_not_frozen(
    tmp_path: Path,
) -> None:
    """Read from one capture, the port would keep T / (T - 1) of that capture's length:
    refused, naming the nodes that read it."""
    path = _export(StatisticsPooling().eval(), torch.randn(2, 5, 3), tmp_path / "std.onnx",
                   {0: "b", 1: "t"})  # fmt: skip
    expected = r"constant computed from the input's length \(7 in one capture, 9 in the other\)"
    with pytest.raises(UnsupportedFeatureError, match=expected) as refused:
        compare(path)
    assert "at Mul node" in str(refused.value)


class AttentionAfter(nn.Module):
    """A BiLSTM, then a transformer encoder layer: torch.onnx writes its attention's reshapes
    with the sizes of the example it exports on, whatever axes it is told are dynamic."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True, bidirectional=True)
        self.attend = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(self.lstm(x)[0])


def test_a_graph_that_runs_at_its_export_sizes_alone_is_refused_saying_so(
    tmp_path: Path,
) -> None:
    path = _export(AttentionAfter().eval(), torch.randn(2, 5, 3), tmp_path / "attention.onnx",
                   {0: "b", 1: "t"})  # fmt: skip
    expected = r"does not run at 7 or 448 steps on onnxruntime either \(Reshape node '.*'"
    with pytest.raises(UnsupportedFeatureError, match=expected) as refused:
        compare(path)
    assert "compare(module)" in str(refused.value)


def test_a_graph_of_fixed_sizes_is_compared_at_them(tmp_path: Path) -> None:
    """Exported without dynamic axes: its batch freed, checked row by row, and read at its
    length; the original runs at its own sizes."""
    path = _export(SpectrogramCRN().eval(), torch.randn(2, 1, 9, 16), tmp_path / "fixed.onnx", None)
    report = compare(path, frameworks=["torch", "onnxruntime"])
    assert report, report.lines()
    assert report.input_shape == (2, 1, 9, 16)


def test_a_graph_of_one_length_is_read_at_that_length(tmp_path: Path) -> None:
    x = torch.randn(2, 1, 9, 16)
    path = _export(SpectrogramCRN().eval(), x, tmp_path / "nine.onnx", {0: "b"})
    (graph_input,) = read_source(path).reading.inputs
    assert read_source(path).reading.layer(graph_input).options["shape"] == (1, 9, 16)
    assert compare(path, frameworks=["torch", "onnxruntime"])


def test_a_graph_of_no_recurrent_node_keeps_the_readers_refusal(tmp_path: Path) -> None:
    conv = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU())
    path = _export(conv.eval(), torch.randn(2, 1, 9), tmp_path / "conv.onnx", {0: "b", 2: "t"})
    with pytest.raises(UnsupportedFeatureError, match="no LSTM, GRU or RNN node") as refused:
        compare(path)
    assert "torch module" not in str(refused.value)
