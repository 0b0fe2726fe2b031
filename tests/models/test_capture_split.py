"""Splits in a ``forward``, as gated layers write them (``a, b = h.chunk(2, dim=-1)``,
``torch.split``, ``unbind``, ``F.glu``): each piece used is a slice of the split axis.

Expected values come from the module itself, ``module(x)``, run by torch.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, torch_to_keras  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn
F = torch.nn.functional


class Gated(nn.Module):
    """A BiLSTM's output gated by halves, split in uneven sizes, cut in pieces over a
    fixed axis, and through ``F.glu``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(81)
        self.lstm = nn.LSTM(4, 5, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h, _ = self.lstm(x)
        forward, backward = h.chunk(2, dim=-1)
        gated = self.fc(forward * torch.sigmoid(backward))
        head, _, tail = torch.split(h, [3, 4, 3], dim=2)
        pairs = h.reshape(h.size(0), h.size(1), 5, 2)
        first, second = pairs.unbind(-1)
        return gated, head - tail, first * second, F.glu(h, dim=-1)


def test_gates_written_with_splits_agree_everywhere() -> None:
    assert_agrees_everywhere(Gated().eval(), steps=8)


def test_each_piece_used_is_a_slice_and_the_split_computes_nothing() -> None:
    graph = graph_from_torch(Gated().eval())
    pieces = sorted(
        (r.options["start"], r.options["stop"])
        for r in graph.layers
        if r.class_name in ("chunk", "split_with_sizes")
    )
    assert pieces == [(0, 3), (0, 5), (5, 10), (7, 10)]  # the unused piece is not read
    assert sorted(r.options["start"] for r in graph.layers if r.class_name == "unbind") == [0, 1]


class OverTime(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(x)
        first, rest = torch.split(h, [2, h.size(1) - 2], dim=1)
        return first.sum(1) + rest.sum(1)


def test_a_split_of_the_time_axis_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedFeatureError, match=r"over an axis of free length \(dim=1\)"):
        torch_to_keras(OverTime().eval())
