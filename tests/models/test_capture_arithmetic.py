"""Arithmetic between tensors that broadcast, powers, clamps and vector norms in a
``forward``, as real models write them: a speaker encoder's L2-normalized embedding
(``x / torch.norm``), ``F.normalize``, a gate of one channel scaling every feature, clamps,
an RMS normalization written by hand.

Expected values come from the module itself, ``module(x)``, run by torch.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import (  # noqa: E402
    UnsupportedFeatureError,
    keras_to_torch,
    to_onnx,
    torch_to_keras,
)
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn
F = torch.nn.functional


class SpeakerEncoder(nn.Module):
    """Frames, a 2-layer LSTM, its last layer's final state, Linear, ReLU, L2-normalized."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(31)
        self.lstm = nn.LSTM(4, 6, 2, batch_first=True)
        self.linear = nn.Linear(6, 5)
        self.relu = nn.ReLU()

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(frames)
        embeds = self.relu(self.linear(hidden[-1])) + 0.1
        return embeds / torch.norm(embeds, dim=1, keepdim=True)


class GatedNormalized(nn.Module):
    """A one-channel gate scaling every feature, clamps, and ``F.normalize`` of orders 2 and 1."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(32)
        self.gru = nn.GRU(4, 6, batch_first=True, bidirectional=True)
        self.gate = nn.Linear(12, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, _ = self.gru(x)
        gated = h * torch.sigmoid(self.gate(h))  # (B, T, 12) * (B, T, 1)
        clamped = torch.clamp(gated, -0.2, 0.3) - torch.clamp_min(h, 0.1)
        return F.normalize(clamped, dim=-1), F.normalize(h, p=1.0, dim=1)


class HandWrittenNorms(nn.Module):
    """An RMS normalization written by hand, a scale from ``exp``, powers and reciprocals."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(33)
        self.lstm = nn.LSTM(4, 6, batch_first=True)
        self.log_scale = nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x)
        rms = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
        length = torch.sqrt(h.square().sum(-1, keepdim=True) + 1e-6)
        scale = torch.exp(self.log_scale(h) * 0.5)
        return rms * scale + torch.reciprocal(length + 1.0) - 2.0 ** (h * 0.1)


class HeldTensors(nn.Module):
    """Tensors the module holds in its arithmetic: a layer norm written with ``gamma`` and
    ``beta``, attention scores from ``x @ self.W`` over a buffer, ``F.linear`` on parameters."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(34)
        self.lstm = nn.LSTM(4, 6, batch_first=True, bidirectional=True)
        self.gamma = nn.Parameter(torch.rand(12) + 0.5)
        self.beta = nn.Parameter(torch.randn(12))
        self.register_buffer("temperature", torch.tensor([2.0]))
        self.W = nn.Parameter(torch.randn(12, 1))
        self.out_w, self.out_b = nn.Parameter(torch.randn(3, 12)), nn.Parameter(torch.randn(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x)
        mu = h.mean(-1, keepdim=True)
        h = (h - mu) / torch.sqrt(((h - mu) ** 2).mean(-1, keepdim=True) + 1e-5)
        h = h * self.gamma + self.beta
        weights = torch.softmax((h @ self.W) / self.temperature, dim=1)  # (B, T, 1)
        return F.linear((h * weights).sum(1), self.out_w, self.out_b)


class LogFrontEnd(nn.Module):
    """A log-magnitude front end, then elementwise functions of the GRU's output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(35)
        self.gru = nn.GRU(4, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(torch.log(x.abs() + 1e-3))
        waves = torch.sin(h) * torch.cos(h) + torch.expm1(h * 0.1)
        return waves + torch.log1p(h.abs()) * torch.sign(h)


class Extremes(nn.Module):
    """``torch.maximum`` of two tensors, and ``torch.minimum`` with a one-element buffer (as
    an ONNX graph's ``Min(x, cap)`` runs)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(37)
        self.gru = nn.GRU(4, 5, batch_first=True)
        self.register_buffer("cap", torch.tensor(0.25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(x)
        return torch.minimum(torch.maximum(h, torch.tanh(h * 3.0)), self.cap)


class TiedLanguageModel(nn.Module):
    """A language model whose output projection is its embedding table, transposed in
    ``forward`` or read by ``einsum`` (tied weights), with a learned temperature kept as
    its logarithm, and a projection written as ``einsum`` with a parameter."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(36)
        self.embedding = nn.Embedding(20, 6)
        self.lstm = nn.LSTM(6, 6, batch_first=True)
        self.log_temperature = nn.Parameter(torch.tensor([0.3]))
        self.W = nn.Parameter(torch.randn(6, 4))

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h, _ = self.lstm(self.embedding(ids))
        logits = h @ self.embedding.weight.t() / self.log_temperature.exp()
        tied = torch.einsum("btd,vd->btv", h, self.embedding.weight)
        projected = torch.einsum("...d,dh->...h", h, self.W)
        return logits, torch.matmul(h, self.embedding.weight.T), tied, projected


def test_operations_on_held_tensors_only_are_computed_once_and_held() -> None:
    module = TiedLanguageModel().eval()
    graph = graph_from_torch(module)
    dense = [r for r in graph.layers if r.kind == "dense"]
    tied = [r for r in dense if r.weights["kernel"].shape == (6, 20)]
    (projected,) = [r for r in dense if r not in tied]
    table = module.embedding.weight.detach().numpy()
    assert len(tied) == 3
    for record in tied:  # the table, transposed: (features, vocabulary)
        np.testing.assert_array_equal(record.weights["kernel"], table.T)
    np.testing.assert_array_equal(projected.weights["kernel"], module.W.detach().numpy())
    (scale,) = [r for r in graph.layers if r.kind == "weight_op"]
    np.testing.assert_allclose(scale.weights["value"], np.exp([0.3]), rtol=1e-6)
    assert_agrees_everywhere(module, steps=8)


class SharedTableLM(nn.Module):
    """A language model holding its table as a parameter of its own, looked up with
    ``F.embedding`` and read again, transposed, for the logits."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(37)
        self.table = nn.Parameter(torch.randn(20, 6))
        self.lstm = nn.LSTM(6, 6, batch_first=True)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(F.embedding(ids, self.table))
        return h @ self.table.t()


def test_a_held_table_looked_up_with_f_embedding_is_an_embedding() -> None:
    module = SharedTableLM().eval()
    graph = graph_from_torch(module, input_shape=(None,))  # no module reads the ids alone
    (embedding,) = [r for r in graph.layers if r.kind == "embedding"]
    np.testing.assert_array_equal(embedding.weights["embeddings"], module.table.detach())
    assert graph.layer(graph.inputs[0]).options["dtype"] == "int64"
    ids = np.random.default_rng(9).integers(0, 20, (3, 7))
    assert_agrees_everywhere(module, inputs=ids)


def _frames(batch: int, steps: int) -> np.ndarray:
    return np.random.default_rng(8).standard_normal((batch, steps, 4)).astype("float32")


MODULES = [SpeakerEncoder, GatedNormalized, HandWrittenNorms, HeldTensors, LogFrontEnd, Extremes]


def _expected(module: nn.Module, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        outputs = module(torch.from_numpy(x))
    return [y.numpy() for y in (outputs if isinstance(outputs, tuple) else (outputs,))]


@pytest.mark.parametrize("make", MODULES)
def test_the_keras_port_matches_the_module(make) -> None:
    module = make().eval()
    model = torch_to_keras(module)  # verified against module(x) at 3 rows of 7 steps
    x = _frames(4, 10)  # and at another batch and length here
    actual = model(x, training=False)
    actual = actual if isinstance(actual, (list, tuple)) else [actual]
    for mine, theirs in zip(actual, _expected(module, x), strict=True):
        np.testing.assert_allclose(np.asarray(mine), theirs, rtol=1e-6, atol=2e-6)


@pytest.mark.parametrize("make", MODULES)
def test_compare_passes_on_every_framework(make) -> None:
    assert_agrees_everywhere(make().eval(), steps=8)


def test_the_onnx_export_matches_the_module() -> None:
    import onnxruntime

    module = GatedNormalized().eval()
    session = onnxruntime.InferenceSession(to_onnx(module).SerializeToString())
    x = _frames(2, 9)
    actual = session.run(None, {session.get_inputs()[0].name: x})
    for mine, theirs in zip(actual, _expected(module, x), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=2e-6)


def test_each_operation_reads_as_its_record() -> None:
    graph = graph_from_torch(GatedNormalized().eval())
    read = {(r.kind, r.options.get("op")) for r in graph.layers}
    assert {
        ("merge", "multiply"),  # the gate, broadcast over the features
        ("merge", "divide"),  # F.normalize's division, its expand_as passed on
        ("scalar_op", "maximum"),  # clamp's min and clamp_min
        ("scalar_op", "minimum"),  # clamp's max
        ("reduce", "l2_norm"),
        ("reduce", "l1_norm"),
    } <= read
    assert not any(r.class_name.startswith("expand") for r in graph.layers)


@pytest.mark.parametrize("make", [GatedNormalized, HeldTensors])
def test_the_saved_keras_port_ports_back_to_torch_and_to_keras(make, tmp_path) -> None:
    module = make().eval()
    path = tmp_path / "saved.keras"
    torch_to_keras(module).save(path)
    port = keras_to_torch(path)  # verified against the model Keras loads
    x = _frames(2, 6)
    expected = _expected(module, x)
    with torch.no_grad():
        actual = port(torch.from_numpy(x))
    actual = actual if isinstance(actual, tuple) else (actual,)
    for mine, theirs in zip(actual, expected, strict=True):
        np.testing.assert_allclose(mine.numpy(), theirs, rtol=1e-6, atol=2e-6)
    again = torch_to_keras(port)(x)  # its weights read back from its modules, verified
    again = again if isinstance(again, (list, tuple)) else [again]
    for mine, theirs in zip(again, expected, strict=True):
        np.testing.assert_allclose(np.asarray(mine), theirs, rtol=1e-6, atol=2e-6)


def test_held_tensors_read_as_weight_ops_and_dense_layers() -> None:
    graph = graph_from_torch(HeldTensors().eval())
    held = {r.options["op"]: r for r in graph.layers if r.kind == "weight_op"}
    assert {"multiply", "add", "divide"} <= set(held)
    np.testing.assert_array_equal(held["add"].weights["value"], HeldTensors().beta.detach())
    dense = [r for r in graph.layers if r.kind == "dense"]
    assert [r.weights["kernel"].shape for r in dense] == [(12, 1), (12, 3)]
    assert "bias" in dense[1].weights and "bias" not in dense[0].weights


class Refused(nn.Module):
    def __init__(self, body) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 6, batch_first=True)
        self.per_row = nn.Parameter(torch.ones(3, 1, 6))  # one row per batch row
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x)
        return self.body(self, h)


@pytest.mark.parametrize(
    "body",
    [
        lambda m, h: torch.cat([h, h[:, :, :1].expand_as(h)], -1),  # one feature, six times
        lambda m, h: h[:, :1].expand_as(h) + h[:, -1:],  # the first step over every step
    ],
    ids=["expand-before-cat", "expand-before-smaller"],
)
def test_an_expanded_tensor_no_merge_broadcasts_is_computed(body) -> None:
    module = Refused(body).eval()
    port = torch_to_keras(module)  # checked against forward
    assert any(layer.__class__.__name__ == "Expand" for layer in port.layers)
    x = np.random.default_rng(3).standard_normal((2, 11, 4)).astype("float32")
    with torch.no_grad():
        want = module(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(np.asarray(port(x)), want, atol=1e-5)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            lambda m, h: h.unsqueeze(1) / h,  # torch aligns the batch with the new axis
            r"applies aten\.div to tensors of shapes \(3, 1, 7, 6\) and \(3, 7, 6\)",
        ),
        (lambda m, h: h / torch.norm(h, float("inf"), dim=2, keepdim=True), r"of order inf"),
        (lambda m, h: h.clamp(min=h[:, :1]), r"clamp with bounds that are tensors"),
        (lambda m, h: h * m.per_row, r"'p_per_row' of shape \(3, 1, 6\), which broadcasts"),
    ],
    ids=[
        "other-rank",
        "inf-norm",
        "tensor-bound",
        "held-per-row",
    ],
)
def test_what_does_not_broadcast_as_keras_is_refused_with_its_line(body, says) -> None:
    with pytest.raises(UnsupportedFeatureError, match=says) as caught:
        torch_to_keras(Refused(body).eval())
    assert "test_capture_arithmetic.py" in str(caught.value)
