"""ONNX whole models (token ids in, Dense out), float and int8, read through the module that
runs their nodes and compared with the graph on onnxruntime; and graphs exported for one
batch size, read at any."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from tests.quantized_models import int8_tagger  # noqa: E402
from xframe_bilstm import compare, onnx_to_keras, onnx_to_torch  # noqa: E402
from xframe_bilstm.adapters.onnx.nodes import constant_values  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.models.from_onnx import graph_from_onnx  # noqa: E402

FRAMEWORKS = ["torch", "onnxruntime"]


class _Tagger(torch.nn.Module):
    def __init__(self, cell: str, bidirectional: bool, head: str, middle: Any = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = torch.nn.Embedding(11, 4)
        rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.rnn = rnn(4, 3, batch_first=True, bidirectional=bidirectional)
        self.linear = torch.nn.Linear(3 * (1 + bidirectional), 5)
        self.head, self.middle = head, middle

    def forward(self, tokens: Any) -> Any:
        y, _ = self.rnn(self.embedding(tokens))
        if self.middle is not None:
            y = self.middle(y)
        y = self.linear(y)
        return torch.softmax(y, dim=-1) if self.head == "softmax" else y


def _export(module: Any, path: Path, *, batch: int = 2, dynamic: bool = True) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), (torch.ones(batch, 6, dtype=torch.long),), str(path), dynamo=False,
            input_names=["tokens"], output_names=["out"],
            dynamic_axes={"tokens": {0: "batch", 1: "time"}} if dynamic else None,
        )  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("cell", "bidirectional", "head"),
    [("lstm", True, "softmax"), ("gru", False, "linear")],
    ids=["bilstm-softmax", "gru-linear"],
)
def test_a_torch_export_compares_with_its_original(
    tmp_path: Path, cell: str, bidirectional: bool, head: str
):
    module = _Tagger(cell, bidirectional, head)
    path = _export(module, tmp_path / "tagger.onnx")
    model = graph_from_onnx(onnx.load(str(path)))
    kinds = [r.kind for r in model.layers]
    assert kinds[:3] == ["input", "embedding", "recurrent"]
    (dense,) = [r for r in model.layers if r.kind == "dense"]
    # The kernel and bias are the Linear's, read through the graph's MatMul and Add.
    np.testing.assert_allclose(dense.weights["kernel"], module.linear.weight.detach().numpy().T)
    np.testing.assert_allclose(dense.weights["bias"], module.linear.bias.detach().numpy())
    np.testing.assert_array_equal(
        model.layers[1].weights["embeddings"], module.embedding.weight.detach().numpy()
    )
    assert (kinds[-1] == "activation") == (head == "softmax")
    report = compare(path, frameworks=FRAMEWORKS)
    assert report, report.to_text()
    assert any("@original" in pair.label for pair in report.pairs)


@pytest.mark.parametrize(
    "options",
    [{}, {"per_channel": True}, {"fused": True}, {"layers": 2}],
    ids=["int8", "per-channel", "fused", "two-layers"],
)
def test_the_int8_tagger_passes_compare_within_the_default_budget(
    tmp_path: Path, options: dict[str, Any]
):
    pytest.importorskip("onnxruntime.quantization")
    _, graph = int8_tagger(tmp_path, **options)
    report = compare(onnx.load_from_string(graph), frameworks=FRAMEWORKS)
    assert report, report.to_text()
    int8_pairs = [p for p in report.pairs if "int8" in p.label]
    assert int8_pairs and all(p.kind == "quantization" for p in int8_pairs)


def test_an_operator_outside_the_vocabulary_is_refused_by_name(tmp_path: Path):
    module = _Tagger("lstm", False, "linear", middle=lambda y: torch.cumsum(y, dim=1))
    path = _export(module, tmp_path / "cumsum.onnx")
    with pytest.raises(UnsupportedFeatureError, match=r"CumSum \(1 node: '/CumSum'\)"):
        compare(path, frameworks=FRAMEWORKS)


def test_an_int8_graph_neither_reading_accepts_is_refused_naming_quantization_error(
    tmp_path: Path,
):
    quantization = pytest.importorskip("onnxruntime.quantization")
    module = _Tagger("lstm", True, "linear", middle=lambda y: torch.cumsum(y, dim=1))
    path = _export(module, tmp_path / "cumsum.onnx")
    quantization.quantize_dynamic(
        str(path), str(tmp_path / "int8.onnx"), weight_type=quantization.QuantType.QInt8
    )
    with pytest.raises(
        UnsupportedFeatureError, match=r"int8 graph.*CumSum \(1 node.*quantization_error\(graph\)"
    ):
        compare(tmp_path / "int8.onnx", frameworks=FRAMEWORKS)


def test_a_float_sequence_into_a_gru_and_a_linear_reads_with_no_embedding(tmp_path: Path):
    torch.manual_seed(1)

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.GRU(4, 3, batch_first=True)
            self.linear = torch.nn.Linear(3, 2)

        def forward(self, x: Any) -> Any:
            return torch.sigmoid(self.linear(self.rnn(x)[0]))

    path = tmp_path / "head.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Head().eval(), (torch.zeros(2, 6, 4),), str(path), dynamo=False,
            input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch", 1: "time"}},
        )  # fmt: skip
    model = graph_from_onnx(onnx.load(str(path)))
    assert [r.kind for r in model.layers if r.kind != "reshape"] == [
        "input", "recurrent", "dense", "activation",
    ]  # fmt: skip
    assert model.layers[-1].options["activation"] == "sigmoid"
    report = compare(path, frameworks=FRAMEWORKS)
    assert report, report.to_text()
    assert any("@original" in pair.label for pair in report.pairs)


class _TimeMajor(torch.nn.Module):
    """Frames (time, batch, features) into a projection and a BiLSTM, torch's default
    layout; the last step classified."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.project = torch.nn.Linear(5, 8)
        self.lstm = torch.nn.LSTM(8, 6, bidirectional=True)
        self.fc = torch.nn.Linear(12, 3)

    def forward(self, x: Any) -> Any:
        return self.fc(self.lstm(torch.relu(self.project(x)))[0][-1])


def test_a_time_major_export_reads_with_its_input_time_major(tmp_path: Path):
    module, path = _TimeMajor().eval(), tmp_path / "time_major.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (torch.zeros(7, 4, 5),), str(path), dynamo=False, input_names=["x"],
            dynamic_axes={"x": {0: "time", 1: "batch"}},
        )  # fmt: skip
    graph = graph_from_onnx(onnx.load(str(path)))
    assert graph.time_major(graph.inputs[0])
    report = compare(path, frameworks=FRAMEWORKS)
    assert report, report.to_text()
    assert any("@original" in pair.label for pair in report.pairs)
    x = np.random.default_rng(0).standard_normal((9, 2, 5)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(onnx_to_torch(path)(torch.from_numpy(x)), expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(onnx_to_keras(path)(x)), expected, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_a_graph_exported_for_one_batch_size_compares_at_it_and_ports_at_any(
    tmp_path: Path, batch: int
):
    """torch.onnx.export without dynamic_axes: the graph declares the example's sizes."""
    module = _Tagger("lstm", True, "softmax")
    path = _export(module, tmp_path / "fixed.onnx", batch=batch, dynamic=False)
    report = compare(path, frameworks=FRAMEWORKS)
    assert report, report.to_text()
    assert report.input_shape == (batch, 6)
    assert any("@original" in pair.label for pair in report.pairs)
    keras_model = onnx_to_keras(path)
    ids = np.random.default_rng(0).integers(0, 11, (5, 6))
    with torch.no_grad():
        expected = module(torch.as_tensor(ids)).numpy()
    np.testing.assert_allclose(np.asarray(keras_model(ids)), expected, atol=1e-5)


class _BatchCentred(torch.nn.Module):
    """Mixes the rows of a batch: a graph computing it is not one row at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = torch.nn.GRU(4, 3, batch_first=True)

    def forward(self, x: Any) -> Any:
        y = self.rnn(x)[0]
        return y - y.mean(0, keepdim=True)


def test_a_graph_mixing_its_batch_rows_stays_at_its_batch_size(tmp_path: Path):
    path = tmp_path / "centred.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_BatchCentred().eval(), (torch.zeros(2, 6, 4),), str(path), dynamo=False)
    with pytest.raises(UnsupportedFeatureError, match="its batch fixed"):
        graph_from_onnx(onnx.load(str(path)))


_DYNAMO_FIXED = """
import torch
torch.manual_seed(0)
class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 8, 3, padding=1)
        self.gru = torch.nn.GRU(8, 16, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = torch.nn.Linear(32, 3)
    def forward(self, x):
        y = self.gru(torch.relu(self.conv(x)).transpose(1, 2))[0]
        return torch.softmax(self.fc(y[:, -1]), -1)
torch.onnx.export(Classifier().eval(), (torch.randn(1, 4, 20),), {path!r}, dynamo=True)
"""


def test_a_dynamo_export_for_one_batch_size_reads_at_any(tmp_path: Path):
    """torch's dynamo exporter writes the batch into the graph (initial states of zeros of
    that batch, Reshape targets holding it): freed, checked row by row, and read."""
    import subprocess
    import sys

    pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript")
    path = tmp_path / "classifier.onnx"
    script = _DYNAMO_FIXED.format(path=str(path))
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    proto = onnx.load(str(path))
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [1, 4, 20]
    model = graph_from_onnx(proto)
    assert {"conv", "recurrent", "dense"} <= {r.kind for r in model.layers}
    report = compare(path, frameworks=FRAMEWORKS)
    assert report, report.to_text()
    assert report.input_shape == (1, 4, 20)
    # onnx_to_torch runs the freed graph: at any batch, each row as the graph computes it.
    x = np.random.default_rng(1).standard_normal((3, 4, 20)).astype(np.float32)
    with torch.no_grad():
        rows = onnx_to_torch(path)(torch.as_tensor(x)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for row in range(3):
        (expected,) = session.run(None, {"x": x[row : row + 1]})
        np.testing.assert_allclose(rows[row : row + 1], expected, atol=1e-6)


class _PerStep(torch.nn.Module):
    """Every step through a Linear on the rows and steps merged, ``x.reshape(B * T, -1)``,
    and split back, as a character CNN's words are: torch.onnx folds B * T into the
    targets of a graph exported for one batch size."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.embedding = torch.nn.Embedding(11, 4)
        self.per_step = torch.nn.Linear(4, 6)
        self.rnn = torch.nn.GRU(6, 3, batch_first=True)

    def forward(self, tokens: Any) -> Any:
        batch, steps = tokens.shape
        x = self.per_step(self.embedding(tokens).reshape(batch * steps, -1))
        return self.rnn(torch.relu(x).reshape(batch, steps, -1))[0]


@pytest.mark.parametrize("batch", [1, 3])
def test_rows_and_steps_merged_at_one_batch_size_read_at_any(tmp_path: Path, batch: int):
    module = _PerStep()
    path = _export(module, tmp_path / "per_step.onnx", batch=batch, dynamic=False)
    proto = onnx.load(str(path))
    constants = constant_values(proto)
    targets = [constants[n.input[1]].tolist() for n in proto.graph.node if n.op_type == "Reshape"]
    assert [batch * 6, -1] in targets  # B * T folded
    report = compare(path, frameworks=FRAMEWORKS)
    assert report, report.to_text()
    ids = np.random.default_rng(3).integers(0, 11, (5, 6))
    with torch.no_grad():
        expected = module(torch.as_tensor(ids)).numpy()
        ported = onnx_to_torch(path)(torch.as_tensor(ids)).numpy()
    np.testing.assert_allclose(ported, expected, atol=1e-6)


def test_a_graph_of_one_batch_size_and_length_is_diagnosed_and_compared_against(tmp_path: Path):
    """On either side of diagnose(), and as compare's against, the graph runs at the batch
    size and length it was exported at: the generated input takes them."""
    import copy

    from xframe_bilstm import diagnose

    module = _Tagger("lstm", True, "linear")
    path = _export(module, tmp_path / "fixed.onnx", batch=1, dynamic=False)
    assert diagnose(module, path).code == "equivalent"
    report = compare(module, against=path, frameworks=["torch"])
    assert report, report.to_text()
    assert report.input_shape == (1, 6)
    broken = copy.deepcopy(module)
    with torch.no_grad():  # torch's two biases both set to their sum
        broken.rnn.bias_hh_l0.add_(broken.rnn.bias_ih_l0)
        broken.rnn.bias_ih_l0.copy_(broken.rnn.bias_hh_l0)
    assert diagnose(path, broken).code == "bias_double_counted"
