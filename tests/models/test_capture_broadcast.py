"""torch modules that give a tensor they hold the batch axis in ``forward``: learned initial
states, a learned query, a class token. Read as ``broadcast`` records; expected values are
``module(x)``, run by torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, compare, to_onnx, torch_to_keras  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn
X = np.random.default_rng(0).standard_normal((3, 6, 3)).astype("float32")


class LearnedStates(nn.Module):
    """Initial states trained with the model: stacked (layers * directions, 1, H) as torch
    takes them, repeated over the batch by ``expand`` (h) and ``repeat`` (c)."""

    def __init__(self, bidirectional: bool = True, layers: int = 2) -> None:
        super().__init__()
        torch.manual_seed(layers)
        directions = 2 if bidirectional else 1
        self.lstm = nn.LSTM(3, 4, layers, batch_first=True, bidirectional=bidirectional)
        self.h0 = nn.Parameter(torch.randn(layers * directions, 1, 4))
        self.c0 = nn.Parameter(torch.randn(layers * directions, 1, 4))
        self.fc = nn.Linear(4 * directions, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = self.h0.expand(-1, x.size(0), -1).contiguous()
        c0 = self.c0.repeat(1, x.size(0), 1)
        return self.fc(self.lstm(x, (h0, c0))[0])


class ClassToken(nn.Module):
    """A learned first step joined before the input's, its output classified."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.cls = nn.Parameter(torch.randn(1, 1, 3))
        self.gru = nn.GRU(3, 4, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = torch.cat([self.cls.expand(x.size(0), -1, -1), x], dim=1)
        return self.gru(steps)[0][:, 0]


class LearnedQuery(nn.Module):
    """Attention pooling: one learned query over the BiLSTM's steps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.lstm = nn.LSTM(3, 4, batch_first=True, bidirectional=True)
        self.query = nn.Parameter(torch.randn(1, 8))
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = self.lstm(x)[0]
        query = self.query.unsqueeze(0).expand(x.size(0), -1, -1)
        return self.attention(query, steps, steps, need_weights=False)[0].squeeze(1)


def _expected(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.as_tensor(x)).numpy()


@pytest.mark.parametrize(
    "make",
    [LearnedStates, lambda: LearnedStates(False, 1), ClassToken, LearnedQuery],
    ids=["states_bidirectional", "states_one_layer", "class_token", "learned_query"],
)
def test_a_held_tensor_given_the_batch_axis_ports(make, tmp_path) -> None:
    module = make().eval()
    model = torch_to_keras(module)  # verified against module(x)
    np.testing.assert_allclose(np.asarray(model(X)), _expected(module, X), rtol=0, atol=2e-5)
    assert "broadcast" in [record.kind for record in graph_from_torch(module).layers]
    to_onnx(module, tmp_path / "model.onnx")  # checked against the module on onnxruntime


def test_learned_states_are_one_value_each_read_in_keras_order() -> None:
    module = LearnedStates().eval()
    graph = graph_from_torch(module)
    (h0,) = [r for r in graph.layers if r.kind == "broadcast" and r.name == "expand"]
    np.testing.assert_array_equal(h0.weights["value"], module.h0.detach().numpy()[:, 0])
    # layer 1's backward h is entry 1 * 2 + 1 of torch's stack
    reads = graph.layer("lstm_1").inputs
    assert graph.layer(reads[3]).options["start"] == 3


def test_compare_runs_every_framework() -> None:
    report = compare(LearnedStates().eval(), frameworks=["torch", "keras", "onnxruntime"])
    assert report, "\n".join(report.lines())


class RowsDiffer(nn.Module):
    """A held table sliced by the batch size: each row its own, not a repeat."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(8, 4))
        self.gru = nn.GRU(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x, self.table[: x.size(0)].unsqueeze(0))[0]


def test_a_held_tensor_whose_rows_differ_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedFeatureError, match="batch axis whose rows differ"):
        torch_to_keras(RowsDiffer().eval())
