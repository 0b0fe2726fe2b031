"""Initial states a graph builds from zeros run as no initial state (a recurrent module then
starts from zeros), and only those. Expected values come from onnxruntime on the export."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from tests.onnx_exports import torch_export  # noqa: E402
from xframe_bilstm.adapters.onnx import onnx_module  # noqa: E402
from xframe_bilstm.adapters.onnx.nodes import graph_constant_values  # noqa: E402
from xframe_bilstm.adapters.onnx.shortcuts import Shortcuts  # noqa: E402


class Filled(torch.nn.Module):
    """A GRU started from states filled with ``value`` for every row of the batch."""

    def __init__(self, value: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.gru, self.value = torch.nn.GRU(3, 4, batch_first=True), value

    def forward(self, x: Any) -> Any:
        return self.gru(x, x.new_full((1, x.shape[0], 4), self.value))[0]


def _export(module: Any) -> onnx.ModelProto:
    return torch_export(module, torch.zeros(2, 5, 3), {0: "b", 1: "t"})


@pytest.mark.parametrize(("value", "dropped"), [(0.0, True), (0.5, False)])
def test_only_zero_initial_states_are_dropped(value: float, dropped: bool) -> None:
    model = _export(Filled(value))
    shortcuts = Shortcuts(model.graph, graph_constant_values(model.graph), enabled=True)
    assert bool(shortcuts.zero_states) == dropped
    x = np.random.default_rng(0).standard_normal((3, 6, 3)).astype("float32")
    (expected,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    with torch.no_grad():
        actual = onnx_module(model, capturable=True)(torch.from_numpy(x))
    np.testing.assert_allclose(actual.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize(("shape", "taken"), [((), True), ((1, 1), True), ((1, 1, 1), False)])
def test_a_constant_is_a_number_where_it_adds_no_axis(shape: tuple, taken: bool) -> None:
    """``Add(x, c)`` of a (B, H) tensor and a one-element constant: a number where the
    constant has at most the tensor's rank (the sum keeps the tensor's shape); of a higher
    rank, ONNX's sum gains its axes, so it stays a tensor and the node runs as written."""
    from onnx import TensorProto, helper, numpy_helper

    constant = numpy_helper.from_array(np.full(shape, 2.0, np.float32), "c")
    node = helper.make_node("Add", ["x", "c"], ["y"], name="add")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [constant],
    )  # fmt: skip
    shortcuts = Shortcuts(graph, graph_constant_values(graph), enabled=True)
    values: dict[str, Any] = {"x": torch.ones(2, 3), "c": torch.full(shape, 2.0)}
    assert shortcuts.run(torch, graph.node[0], values) == taken
    if taken:
        assert tuple(values["y"].shape) == (2, 3) and bool((values["y"] == 3).all())
