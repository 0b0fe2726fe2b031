"""``torch.gather`` in a captured ``forward``: each padded row's last valid output, its
position counted from the ids or given as the rows' lengths. Expected values are the
module's own ``forward`` run by torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, torch_to_keras  # noqa: E402
from xframe_bilstm.adapters.onnx.graph_export import graph_export_refusal  # noqa: E402
from xframe_bilstm.graph import LayerRecord, ModelGraph  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn
IDS = np.random.default_rng(0).integers(1, 30, (3, 9))
IDS[1, 6:], IDS[2, 3:] = 0, 0
LENGTHS = np.array([9, 6, 3])


class LastByIds(nn.Module):
    """A classifier reading each row's last valid LSTM output, found by counting its ids."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(101)
        self.embed = nn.Embedding(30, 6, padding_idx=0)
        self.lstm = nn.LSTM(6, 5, batch_first=True)
        self.out = nn.Linear(5, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(ids))
        last = (ids != 0).sum(1) - 1
        index = last.view(-1, 1, 1).expand(-1, 1, out.size(2))
        return self.out(out.gather(1, index).squeeze(1))


class LastByLengths(LastByIds):
    """The same, the rows' lengths given beside the ids."""

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(ids))
        index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.size(2))
        return self.out(out.gather(1, index).squeeze(1))


def _torch(module: nn.Module, *inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(*(torch.as_tensor(x) for x in inputs)).numpy()


@pytest.mark.parametrize(
    ("make", "inputs"), [(LastByIds, IDS), (LastByLengths, [IDS, LENGTHS])], ids=["ids", "lengths"]
)
def test_the_last_valid_step_agrees_on_every_framework(make, inputs) -> None:
    module = make().eval()
    assert_agrees_everywhere(module, inputs=inputs)
    port = torch_to_keras(module)  # checked against forward
    given = inputs if isinstance(inputs, list) else [inputs]
    got = np.asarray(port(given if len(given) > 1 else given[0]))
    np.testing.assert_allclose(got, _torch(module, *given), atol=1e-5)


def test_the_lengths_less_one_are_positions_for_the_gather() -> None:
    graph = graph_from_torch(LastByLengths())
    assert any(map(graph.holds_lengths, graph.inputs))
    (gather,) = [r for r in graph.layers if r.kind == "gather"]
    assert gather.options == {"axis": 1}


def test_gathering_a_block_is_refused_by_name() -> None:
    class Block(LastByIds):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(self.embed(ids))
            index = torch.zeros_like(out[:, :1, :2], dtype=torch.long)
            return out.gather(1, index)

    with pytest.raises(UnsupportedFeatureError, match="gathers positions of shape"):
        torch_to_keras(Block().eval())


def test_the_onnx_export_refuses_integer_inputs_read_as_numbers() -> None:
    level = LayerRecord("level", "input", "InputLayer", options={"shape": (), "dtype": "int64"})
    half = LayerRecord(
        "half", "scalar_op", "mul", ("level",), {"op": "multiply", "constant": 0.5, "reverse": 0}
    )
    graph = ModelGraph("m", (level, half), ("level",), ("half",))
    refusal = graph_export_refusal(graph, 17)
    assert refusal is not None and "'half': reads an integer input as numbers" in refusal
