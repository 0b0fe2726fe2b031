"""Whole models exported by ``torch.onnx.export`` run in ``onnx_to_torch`` as onnxruntime runs them.

The standard operators around the recurrent nodes (:mod:`xframe_bilstm.adapters.onnx.standard_ops`)
in the graphs the TorchScript exporter makes of a CRNN, a voice-activity model, a tagger and a
classifier head with every activation, at an old opset (attribute forms) and a new one.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from torch import nn  # noqa: E402

from xframe_bilstm import onnx_to_torch  # noqa: E402


class CRNN(nn.Module):
    """Conv2d/BatchNorm2d/MaxPool2d -> columns as steps -> BiLSTM -> Linear -> LogSoftmax."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(4, 4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2),
            nn.AvgPool2d((2, 1), count_include_pad=False),
        )
        self.rnn = nn.LSTM(4, 6, batch_first=True, bidirectional=True)
        self.head = nn.Linear(12, 5)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        f = self.features(image)  # (B, C, H, W)
        steps = f.permute(0, 3, 1, 2).reshape(f.shape[0], f.shape[3], -1)
        y, _ = self.rnn(steps)
        return torch.log_softmax(self.head(y), dim=-1)


class VoiceActivity(nn.Module):
    """Conv1d/Pad -> LSTM -> Conv1d -> Sigmoid, on (B, C, T) features."""

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad1d((2, 1))
        self.front = nn.Conv1d(5, 8, 4)
        self.edge = nn.ReplicationPad1d((1, 1))
        self.rnn = nn.LSTM(8, 6, batch_first=True)
        self.out = nn.Conv1d(6, 1, 3, padding=1)
        self.norm = nn.BatchNorm1d(8)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norm(self.front(self.pad(features))))
        x = torch.nn.functional.pad(self.edge(x), (0, 2), value=0.5)[..., 1:-1]
        y, _ = self.rnn(x.transpose(1, 2))
        return torch.sigmoid(self.out(y.transpose(1, 2))).squeeze(1)


class Tagger(nn.Module):
    """Embedding -> BiLSTM -> Linear (-> Softmax)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(20, 6)
        self.rnn = nn.LSTM(6, 5, batch_first=True, bidirectional=True)
        self.head = nn.Linear(10, 4)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, _ = self.rnn(self.embedding(tokens))
        scores = self.head(y)
        return scores, torch.softmax(scores, dim=1)


class Classifier(nn.Module):
    """A GRU under the activations, normalizations and reductions of classifier heads."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(7)
        self.rnn = nn.GRU(7, 8, batch_first=True)
        self.attention = nn.Linear(8, 1)
        self.dense = nn.Linear(8, 8)
        self.dropout = nn.Dropout(0.3)
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(self.norm(x))
        weights = torch.softmax(self.attention(y), dim=1)  # (B, T, 1): over time
        pooled = torch.einsum("bth,bto->bh", y, weights)
        h = self.dropout(nn.functional.gelu(self.dense(pooled)))
        h = nn.functional.elu(h) + nn.functional.leaky_relu(h, 0.2) + nn.functional.selu(h)
        h = nn.functional.hardsigmoid(h) + nn.functional.softplus(h) + nn.functional.hardtanh(h)
        h = h + torch.sqrt(torch.abs(h) + 1).pow(2) - torch.exp(-h.abs()) * torch.log1p(h.abs())
        h = h + y.mean(dim=1) - y.amax(dim=1) + y.sum(dim=1, keepdim=True).squeeze(1) / 8
        return self.out(torch.clamp(h, -3.0, 3.0))


def _export(
    module: nn.Module, example: tuple, opset: int, names: list[str], dynamic: dict
) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            example,
            buffer,
            dynamo=False,
            opset_version=opset,
            # Batch normalization stays a node of its own rather than folded into the Conv.
            training=torch.onnx.TrainingMode.PRESERVE,
            input_names=names,
            dynamic_axes=dynamic,
        )
    return buffer.getvalue()


def _randomize_statistics(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                layer.running_mean.uniform_(-1, 1)
                layer.running_var.uniform_(0.5, 2)
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.uniform_(-0.5, 0.5)
    return module


def _models() -> dict[str, tuple[nn.Module, tuple, list[str], dict]]:
    torch.manual_seed(0)
    return {
        "crnn": (
            CRNN(),
            (torch.randn(2, 1, 8, 11),),
            ["image"],
            {"image": {0: "batch", 3: "width"}},
        ),
        "voice_activity": (
            VoiceActivity(),
            (torch.randn(2, 5, 12),),
            ["features"],
            {"features": {0: "batch", 2: "time"}},
        ),
        "tagger": (
            Tagger(),
            (torch.randint(0, 20, (2, 9)),),
            ["tokens"],
            {"tokens": {0: "batch", 1: "time"}},
        ),
        "classifier": (
            Classifier(),
            (torch.randn(2, 6, 7),),
            ["x"],
            {"x": {0: "batch", 1: "time"}},
        ),
    }


@pytest.mark.parametrize("opset", [12, 17])  # before and after opset 13's changes
@pytest.mark.parametrize("name", ["crnn", "voice_activity", "tagger", "classifier"])
def test_torch_exports_run_as_onnxruntime_runs_them(name: str, opset: int) -> None:
    module, example, names, dynamic = _models()[name]
    graph = _export(_randomize_statistics(module), example, opset, names, dynamic)
    imported = onnx_to_torch(graph)  # verify=True: checked against onnxruntime already

    # And once more here, on inputs of other sizes than the export's and verify's.
    rng = np.random.default_rng(1)
    if name == "tagger":
        x = rng.integers(0, 20, (3, 13)).astype(np.int64)
    else:
        shape = list(example[0].shape)
        for axis in dynamic[names[0]]:
            shape[axis] = 3 if axis == 0 else shape[axis] + 5
        x = rng.standard_normal(shape).astype(np.float32)
    _assert_runs_as_onnxruntime(graph, imported, names[0], x)
    # The exporter kept the operators this test is about.
    ops = {node.op_type for node in onnx.load_from_string(graph).graph.node}
    around = {
        "crnn": {"Conv", "BatchNormalization", "MaxPool", "AveragePool", "MatMul", "LogSoftmax"},
        "voice_activity": {"Conv", "Pad", "BatchNormalization", "Sigmoid", "Relu"},
        "tagger": {"Gather", "MatMul", "Softmax"},
        "classifier": {"Einsum", "Gemm", "Softmax", "Erf", "Elu", "Selu", "Clip", "ReduceMean"},
    }[name]
    assert around <= ops
    assert {"LSTM", "GRU"} & ops


@pytest.mark.parametrize("name", ["crnn", "voice_activity", "tagger", "classifier"])
def test_dynamo_exports_run_as_onnxruntime_runs_them(name: str) -> None:
    pytest.importorskip("onnxscript")  # the dynamo exporter's own dependency
    module, example, names, _ = _models()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _randomize_statistics(module).eval(), example, dynamo=True, input_names=names
        )
    graph = program.model_proto.SerializeToString()
    imported = onnx_to_torch(graph)
    rng = np.random.default_rng(2)
    shape = tuple(example[0].shape)
    x = (
        rng.integers(0, 20, shape).astype(np.int64)
        if name == "tagger"
        else rng.standard_normal(shape).astype(np.float32)
    )
    _assert_runs_as_onnxruntime(graph, imported, names[0], x)


def _assert_runs_as_onnxruntime(
    graph: bytes, imported: nn.Module, name: str, x: np.ndarray
) -> None:
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    expected = session.run(None, {name: x})
    with torch.no_grad():
        actual = imported(torch.from_numpy(x))
    actual = actual if isinstance(actual, tuple) else (actual,)
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert got.shape == want.shape
        np.testing.assert_allclose(got.numpy(), want, atol=2e-5, rtol=1e-5)
