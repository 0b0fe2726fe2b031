"""A recurrent node's ``Y`` handed over in the layout the graph reads it in, by a capturable
interpreter module: the same outputs, and no permute that moves the batch axis. Expected
values come from onnxruntime on torch.onnx's export."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from tests.onnx_exports import torch_export  # noqa: E402
from xframe_bilstm.adapters.onnx import onnx_module  # noqa: E402
from xframe_bilstm.adapters.onnx.direction_axis import (  # noqa: E402
    BATCH_FIRST_DIRECTIONS,
    SQUEEZED,
    folded_readers,
)
from xframe_bilstm.adapters.onnx.nodes import graph_constant_values  # noqa: E402


def _export(module: Any, outputs: list[str]) -> onnx.ModelProto:
    return torch_export(module, torch.zeros(2, 5, 3), {0: "b", 1: "t"}, outputs=outputs)


@pytest.mark.parametrize(
    ("bidirectional", "form"), [(True, BATCH_FIRST_DIRECTIONS), (False, SQUEEZED)]
)
def test_y_is_handed_over_as_read(bidirectional: bool, form: str) -> None:
    torch.manual_seed(0)
    rnn = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=bidirectional, batch_first=True)
    model = _export(rnn, ["y", "h", "c"])
    forms, passed = folded_readers(model.graph, graph_constant_values(model.graph))
    assert set(forms.values()) == {form} and len(forms) == len(passed) == 2  # both layers
    assert set(passed.values()) == {None}
    x = np.random.default_rng(0).standard_normal((3, 6, 3)).astype("float32")
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    module = onnx_module(model, capturable=True)
    with torch.no_grad():
        actual = module(torch.from_numpy(x))
    for got, want in zip(actual, expected):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    exported = torch.export.export(module, (torch.from_numpy(x),))
    permutes = [n for n in exported.graph.nodes if "permute" in str(n.target)]
    assert all(list(n.args[1])[:2] != [0, 2] for n in permutes)  # none to (T, D, B, H)


def test_a_y_the_graph_returns_keeps_the_onnx_layout() -> None:
    torch.manual_seed(0)

    class Both(torch.nn.Module):  # returns the LSTM's Y as the graph computes it
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(3, 4, bidirectional=True)

        def forward(self, x: Any) -> Any:
            return self.lstm(x)[0]

    model = _export(Both(), ["y"])
    y = next(n for n in model.graph.node if n.op_type == "LSTM").output[0]
    model.graph.output.append(onnx.helper.make_tensor_value_info(y, onnx.TensorProto.FLOAT, None))
    forms, _ = folded_readers(model.graph, graph_constant_values(model.graph))
    assert forms == {}


@pytest.mark.keras
@pytest.mark.parametrize(
    ("layer", "picks"),
    [("lstm", {None}), ("sum", {0, 1})],
    ids=["reshaped-one-direction", "gathered-per-direction"],
)
def test_our_exports_readers_take_the_handed_over_y(layer: str, picks: set) -> None:
    """``to_onnx`` reshapes one direction's ``Y`` to (T, B, H) and gathers each direction of
    a summed ``Bidirectional``: both read the handed-over ``Y``, the same outputs."""
    keras = pytest.importorskip("keras")
    from xframe_bilstm import to_onnx

    inputs = keras.Input((6, 3), name="x")
    lstm = keras.layers.LSTM(4, return_sequences=True)
    if layer == "sum":
        lstm = keras.layers.Bidirectional(lstm, merge_mode="sum")
    model = to_onnx(keras.Model(inputs, lstm(inputs)))
    forms, passed = folded_readers(model.graph, graph_constant_values(model.graph))
    assert len(forms) == 1 and set(passed.values()) == picks
    x = np.random.default_rng(0).standard_normal((3, 6, 3)).astype("float32")
    (expected,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    with torch.no_grad():
        actual = onnx_module(model, capturable=True)(torch.from_numpy(x))
    np.testing.assert_allclose(actual.numpy(), expected, atol=1e-6)
