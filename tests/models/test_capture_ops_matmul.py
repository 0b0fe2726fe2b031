"""Attention written by hand in a forward (``q @ k.transpose(1, 2)``, ``torch.bmm``,
``torch.einsum``) read as ``matmul`` records, and a recurrent cell loop read as its layer.

Expected values come from the module itself, ``module(x)``, run by torch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import to_onnx, torch_to_keras  # noqa: E402
from xframe_bilstm.models.capture_ops import Unsupported, einsum_transposes  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from ..tutorial_models import TextRNNAttention  # noqa: E402
from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn


class Diacritizer(nn.Module):
    """Character ids, a BiLSTM, scaled dot-product self-attention, a Linear per character."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(21)
        self.emb = nn.Embedding(30, 6)
        self.lstm = nn.LSTM(6, 5, batch_first=True, bidirectional=True)
        self.query, self.key, self.value = (nn.Linear(10, 10) for _ in range(3))
        self.out = nn.Linear(20, 7)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.emb(ids))
        q, k, v = self.query(h), self.key(h), self.value(h)
        scores = q @ k.transpose(1, 2) / math.sqrt(q.size(-1))
        weights = torch.softmax(scores, dim=-1)
        return self.out(torch.cat([h, torch.bmm(weights, v)], dim=-1))


class HeadsByEinsum(nn.Module):
    """Two heads split by hand, scores and context by einsum over (batch, heads, time, dim)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(22)
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.qkv = nn.Linear(8, 24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lstm(x)[0]
        q, k, v = self._split(self.qkv(h))
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) * 0.5
        context = torch.einsum("bhqk,bhkd->bhqd", torch.softmax(scores, -1), v)
        return context.permute(0, 2, 1, 3).reshape(h.shape[0], -1, 8) + h

    def _split(self, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        parts = [y[:, :, i * 8 : (i + 1) * 8] for i in range(3)]
        return tuple(p.reshape(p.shape[0], p.shape[1], 2, 4).permute(0, 2, 1, 3) for p in parts)


def _ids(batch: int, steps: int) -> np.ndarray:
    return np.random.default_rng(5).integers(1, 30, (batch, steps))


def _sequences(batch: int, steps: int) -> np.ndarray:
    return np.random.default_rng(6).standard_normal((batch, steps, 4)).astype("float32")


MODULES = [
    pytest.param(Diacritizer, _ids, id="diacritizer"),
    pytest.param(HeadsByEinsum, _sequences, id="heads-by-einsum"),
]


@pytest.mark.parametrize(("make", "data"), MODULES)
def test_the_keras_port_matches_the_module(make, data) -> None:
    module = make().eval()
    model = torch_to_keras(module)  # verified against module(x) at 3 rows of 7 steps
    x = data(4, 10)  # and at another batch and length here
    with torch.no_grad():
        expected = module(torch.as_tensor(x)).numpy()
    actual = np.asarray(model(x.astype("int32") if x.dtype.kind == "i" else x, training=False))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize(("make", "data"), MODULES)
def test_compare_passes_on_every_framework(make, data) -> None:
    assert_agrees_everywhere(make().eval(), steps=8)


def test_the_onnx_export_matches_the_module() -> None:
    import onnxruntime

    module = Diacritizer().eval()
    session = onnxruntime.InferenceSession(to_onnx(module).SerializeToString())
    x = _ids(2, 9)
    (actual,) = session.run(None, {session.get_inputs()[0].name: x})
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-5)


def test_the_graph_reads_each_product_as_a_matmul() -> None:
    graph = graph_from_torch(HeadsByEinsum().eval())
    products = [record for record in graph.layers if record.kind == "matmul"]
    assert [(r.options["transpose_a"], r.options["transpose_b"]) for r in products] == [
        (False, True),
        (False, False),
    ]


@pytest.mark.parametrize(
    ("equation", "expected"),
    [
        ("bij,bjk->bik", (False, False)),
        ("bji,bjk->bik", (True, False)),
        ("bij,bkj->bik", (False, True)),
        ("b h q d, b h k d -> b h q k", (False, True)),
    ],
)
def test_einsum_equations_of_one_batched_product(equation: str, expected) -> None:
    assert einsum_transposes(equation) == expected


@pytest.mark.parametrize("equation", ["bij,bjk->bki", "bij,bij->bi", "...ij,...jk->...ik", "ij"])
def test_other_einsum_equations_are_refused_by_name(equation: str) -> None:
    with pytest.raises(Unsupported, match="not one batched matrix product"):
        einsum_transposes(equation)


class MaskedScores(Diacritizer):
    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.emb(ids))
        scores = h @ h.transpose(1, 2)
        scores = scores.masked_fill((ids == 0)[:, None, :], -1e9)
        return torch.softmax(scores, dim=-1) @ h


def test_masked_scores_are_read() -> None:
    module = MaskedScores().eval()
    ids = np.array([[3, 4, 5, 0, 0], [0, 1, 2, 3, 4]])
    with torch.no_grad():
        expected = module(torch.from_numpy(ids)).numpy()
    model = torch_to_keras(module)
    assert np.abs(np.asarray(model(ids)) - expected).max() < 1e-5


class CellLoop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(4, 5)
        self.fc = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], 5)
        outputs = []
        for step in range(x.shape[1]):
            h = self.cell(x[:, step], h)
            outputs.append(h)
        return self.fc(torch.stack(outputs, dim=1))


def test_a_loop_over_a_cell_is_read_as_its_layer() -> None:
    module = CellLoop().eval()
    x = np.random.default_rng(2).standard_normal((2, 6, 4)).astype("float32")
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    model = torch_to_keras(module)
    assert np.abs(np.asarray(model(x)) - expected).max() < 1e-5


class HeldHead(torch.nn.Module):
    """An LSTM, then a head written as products and sums of held tensors: ``h @ W + b``,
    and a second ``h @ W2`` read twice, whose sum with ``b2`` must stay apart."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(12)
        self.lstm = torch.nn.LSTM(3, 4, batch_first=True)
        self.W = torch.nn.Parameter(torch.randn(4, 5))
        self.b = torch.nn.Parameter(torch.randn(5))
        self.W2 = torch.nn.Parameter(torch.randn(5, 2))
        self.b2 = torch.nn.Parameter(torch.randn(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lstm(x)[0] @ self.W + self.b
        scores = h @ self.W2
        return (scores + self.b2) * scores


def test_a_bias_added_to_a_held_product_is_the_dense_layers_bias() -> None:
    module = HeldHead().eval()
    graph = graph_from_torch(module)
    dense = [record for record in graph.layers if record.kind == "dense"]
    assert [sorted(record.weights) for record in dense] == [["bias", "kernel"], ["kernel"]]
    np.testing.assert_array_equal(dense[0].weights["bias"], module.b.detach().numpy())
    assert [r.options["op"] for r in graph.layers if r.kind == "weight_op"] == ["add"]
    model = torch_to_keras(module)  # checked against module(x)
    assert [type(layer).__name__ for layer in model.layers].count("Dense") == 2
    assert_agrees_everywhere(module, inputs=np.random.default_rng(1).standard_normal((2, 6, 3)))


def test_a_product_with_a_held_vector_is_a_dense_unit_summed_away() -> None:
    torch.manual_seed(13)
    module = TextRNNAttention().eval()
    graph = graph_from_torch(module)
    columns = [r for r in graph.layers if r.kind == "dense"]
    assert [r.weights["kernel"].shape for r in columns] == [(10, 1), (10, 1)]
    model = torch_to_keras(module)  # checked against module(ids)
    assert model.output_shape[1] == (None,)
    assert_agrees_everywhere(module)
