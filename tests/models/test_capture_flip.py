"""``torch.flip`` in a ``forward``, as a bidirectional layer written by hand reverses time:
read as a ``slice`` of step -1 over each axis, in every framework.

Expected values come from the module itself, ``module(x)``, run by torch.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, keras_to_torch, torch_to_keras  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn


class HandWrittenBidirectional(nn.Module):
    """One GRU over the input, one over it reversed in time, their outputs joined in input
    time order; and the input flipped over time and features."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(71)
        self.forwards = nn.GRU(4, 5, batch_first=True)
        self.backwards = nn.GRU(4, 5, batch_first=True)
        self.fc = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ahead, _ = self.forwards(x)
        behind, _ = self.backwards(torch.flip(x, [1]))
        both = torch.cat([ahead, torch.flip(behind, dims=[1])], dim=-1)
        return self.fc(both), x.flip(1, 2) * 2.0


def _frames(batch: int, steps: int) -> np.ndarray:
    return np.random.default_rng(11).standard_normal((batch, steps, 4)).astype("float32")


def test_a_hand_written_bidirectional_layer_agrees_everywhere() -> None:
    assert_agrees_everywhere(HandWrittenBidirectional().eval(), steps=8)


def test_each_flipped_axis_is_a_slice_of_step_minus_one() -> None:
    graph = graph_from_torch(HandWrittenBidirectional().eval())
    flips = [record.options for record in graph.layers if record.class_name == "flip"]
    assert sorted(options["axis"] for options in flips) == [1, 1, 1, 2]
    assert all((o["start"], o["stop"], o["step"]) == (-1, None, -1) for o in flips)


def test_the_saved_keras_port_ports_back_to_torch(tmp_path) -> None:
    module = HandWrittenBidirectional().eval()
    path = tmp_path / "flipped.keras"
    torch_to_keras(module).save(path)
    port = keras_to_torch(path)  # verified against the model Keras loads
    x = _frames(2, 9)
    with torch.no_grad():
        expected = [y.numpy() for y in module(torch.from_numpy(x))]
        actual = [y.numpy() for y in port(torch.from_numpy(x))]
    for mine, theirs in zip(actual, expected, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=2e-6)


class FlipsTheBatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flip(self.gru(x)[0], [0])


def test_flipping_the_batch_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedFeatureError, match=r"aten.flip over the batch axis"):
        torch_to_keras(FlipsTheBatch().eval())
