"""A positional table the module holds, cut to the input's steps in ``forward``
(``self.pe[:, :x.size(1)]``, PyTorch's Transformer tutorial's time-major
``self.pe[:x.size(0)]``, and a learned position embedding looked up at
``torch.arange(T)``), added before an LSTM. Expected values are the module's own
``forward`` run by torch, at the capture's lengths and others."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import (  # noqa: E402
    UnsupportedFeatureError,
    compare,
    keras_to_torch,
    torch_to_keras,
)
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from ..packaged_models import PositionalEncoding  # noqa: E402
from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn
IDS = np.random.default_rng(0).integers(1, 30, (3, 9))


class Tagger(nn.Module):
    """Token embeddings, a learned (1, max_len, d) position table cut to the steps, an
    LSTM; or, with ``tutorial``, the tutorial's encoding around a transpose."""

    def __init__(self, tutorial: bool = False) -> None:
        super().__init__()
        torch.manual_seed(111)
        self.embed = nn.Embedding(30, 8)
        self.positions = nn.Parameter(torch.randn(1, 64, 8))
        self.tutorial = PositionalEncoding(8, max_len=64) if tutorial else None
        self.lstm = nn.LSTM(8, 5, batch_first=True)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        if self.tutorial is not None:
            x = self.tutorial(x.transpose(0, 1)).transpose(0, 1)
        else:
            x = x + self.positions[:, : ids.size(1)]
        return self.lstm(x)[0]


@pytest.mark.parametrize("tutorial", [False, True], ids=["batch-first", "tutorial"])
def test_a_position_table_cut_to_the_steps_agrees_at_any_length(tutorial, tmp_path) -> None:
    module = Tagger(tutorial).eval()
    assert_agrees_everywhere(module, inputs=IDS)
    port = torch_to_keras(module)  # checked against forward
    longer = np.random.default_rng(1).integers(1, 30, (2, 23))
    want = _assert_agrees_longer(module, port, longer)
    path = tmp_path / "tagger.keras"
    port.save(path)
    back = keras_to_torch(path)  # checked against the model Keras loads
    with torch.no_grad():
        np.testing.assert_allclose(back(torch.as_tensor(longer)).numpy(), want, atol=1e-5)


class LearnedPositions(nn.Module):
    """Token embeddings plus a learned position embedding at ``torch.arange(T)``: the
    module's own call, the positions expanded over the batch first, or ``F.embedding``."""

    def __init__(self, lookup: str) -> None:
        super().__init__()
        torch.manual_seed(112)
        self.embed = nn.Embedding(30, 8)
        self.position = nn.Embedding(64, 8)
        self.lstm = nn.LSTM(8, 5, batch_first=True)
        self.lookup = lookup

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(ids.size(1), device=ids.device)
        if self.lookup == "rows":
            positions = self.position(steps.unsqueeze(0).expand(ids.size(0), -1))
        elif self.lookup == "functional":
            positions = nn.functional.embedding(steps, self.position.weight)
        else:
            positions = self.position(steps)
        return self.lstm(self.embed(ids) + positions)[0]


@pytest.mark.parametrize("lookup", ["call", "rows", "functional"])
def test_learned_positions_agree_at_any_length(lookup) -> None:
    module = LearnedPositions(lookup).eval()
    graph = graph_from_torch(module)
    (table,) = [r for r in graph.layers if r.kind == "broadcast"]
    np.testing.assert_array_equal(table.weights["value"], module.position.weight.detach())
    assert_agrees_everywhere(module, inputs=IDS)
    port = torch_to_keras(module)  # checked against forward
    _assert_agrees_longer(module, port, np.random.default_rng(2).integers(1, 30, (2, 31)))


def test_the_table_is_held_whole_and_cut_by_the_steps() -> None:
    graph = graph_from_torch(Tagger())
    (table,) = [r for r in graph.layers if r.kind == "broadcast"]
    assert table.options == {"shape": (64, 8), "steps_of": 1}
    np.testing.assert_array_equal(table.weights["value"], Tagger().positions.detach()[0])
    # the rows past the steps get no gradient, in the reference as in torch and Keras
    report = compare(Tagger().eval(), inputs=IDS, frameworks=["torch", "keras"], gradients=True)
    assert report and report.gradient_pairs, report.lines()


def test_a_table_cut_from_another_start_is_refused_by_name() -> None:
    class Shifted(Tagger):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.lstm(self.embed(ids) + self.positions[:, 1 : ids.size(1) + 1])[0]

    with pytest.raises(UnsupportedFeatureError, match="other than as table"):
        torch_to_keras(Shifted().eval())


def test_positions_counted_from_one_are_refused_by_name() -> None:
    class FromOne(LearnedPositions):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            steps = torch.arange(1, ids.size(1) + 1)
            return self.lstm(self.embed(ids) + self.position(steps))[0]

    with pytest.raises(UnsupportedFeatureError, match=r"aten\.arange"):
        torch_to_keras(FromOne("call").eval())


def _assert_agrees_longer(module: nn.Module, port, ids: np.ndarray) -> np.ndarray:
    """The Keras port agrees with ``module`` on ``ids`` longer than any capture's; the
    module's output."""
    with torch.no_grad():
        want = module(torch.as_tensor(ids)).numpy()
    np.testing.assert_allclose(np.asarray(port(ids)), want, atol=1e-5)
    return want
