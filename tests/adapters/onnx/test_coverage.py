"""One refusal names everything the interpreter cannot run: every operator with its count and
node names, the recurrent nodes that cannot be read and why, those inside loops, and the
recurrent nodes that were understood."""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from xframe_bilstm import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.adapters.onnx import SUPPORTED_OPS, onnx_module  # noqa: E402
from xframe_bilstm.adapters.onnx.coverage import survey  # noqa: E402
from xframe_bilstm.onnx_converters import onnx_to_torch  # noqa: E402

pytestmark = pytest.mark.onnx

# Operators far from recurrent models, which the interpreter does not run.
UNRUN = {"CumSum", "Atan"}


def test_the_operators_these_tests_use_are_outside_the_interpreter() -> None:
    assert not UNRUN & SUPPORTED_OPS


class _Tagger(torch.nn.Module):
    """An LSTM followed by five cumulative sums and an arctangent: operators the interpreter
    lacks."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True)

    def forward(self, x):
        y, _ = self.lstm(x)
        for _ in range(5):
            y = torch.cumsum(y, dim=1)
        return torch.atan(y)


def _torch_export(module, *example):
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, buffer, dynamo=False)
    return onnx.load_from_string(buffer.getvalue())


def test_a_torch_export_is_refused_once_naming_every_operator_and_the_lstm_understood() -> None:
    model = _torch_export(_Tagger(), torch.zeros(2, 5, 3))
    cumsums = [n.name for n in model.graph.node if n.op_type == "CumSum"]
    (atan,) = [n.name for n in model.graph.node if n.op_type == "Atan"]
    (lstm,) = [n.name for n in model.graph.node if n.op_type == "LSTM"]
    assert len(cumsums) == 5
    with pytest.raises(UnsupportedFeatureError) as refused:
        onnx_to_torch(model)
    message = str(refused.value)
    assert message.startswith("onnx_to_torch cannot run 6 nodes of this graph: ")
    shown = ", ".join(repr(name) for name in cumsums[:3])
    assert f"CumSum (5 nodes: {shown} and 2 more)" in message
    assert f"Atan (1 node: {atan!r})" in message
    assert f"Understood: LSTM {lstm!r} (bidirectional, hidden_size=4)" in message
    assert re.search(r"The interpreter runs LSTM, GRU, RNN, If, .*Transpose", message)


def _weight(name: str, shape: tuple[int, ...]):
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def test_other_domains_unreadable_nodes_and_loops_are_all_in_the_one_message() -> None:
    hidden = 2
    quantized = helper.make_node("FusedConv", ["x"], ["q"], name="fused", domain="com.microsoft")
    clipped = helper.make_node(  # an activation ONNX does not have: cannot be read
        "RNN", ["x", "W", "R"], ["y"], name="odd_rnn", hidden_size=hidden, activations=["Swish"]
    )
    body_gru = helper.make_node("GRU", ["x", "Wg", "Rg"], ["", "h"], name="gru_body", hidden_size=2)
    body = helper.make_graph(
        [body_gru],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, None)],
    )
    loop = helper.make_node("Loop", ["", "flag"], ["frames_out"], name="frames", body=body)
    graph = helper.make_graph(
        [quantized, clipped, loop],
        "mixed",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 1, 3]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [_weight("W", (1, hidden, 3)), _weight("R", (1, hidden, hidden))],
    )
    with pytest.raises(UnsupportedFeatureError) as refused:
        onnx_module(helper.make_model(graph))
    message = str(refused.value)
    assert "onnx_to_torch cannot run 2 nodes of this graph" in message
    assert "Loop (1 node: 'frames')" in message
    assert "com.microsoft.FusedConv (1 node: 'fused')" in message
    assert (
        "Recurrent nodes inside loops, which are not run: Loop node 'frames' "
        "(body: GRU node 'gru_body')" in message
    )
    assert (
        "Recurrent nodes that cannot be read: 'odd_rnn': RNN node 'odd_rnn': activation "
        "'Swish' is not an ONNX recurrent activation" in message
    )


def test_nodes_inside_if_branches_are_surveyed_with_their_path() -> None:
    branch = helper.make_graph(
        [helper.make_node("Atan", ["x"], ["v"], name="pick")],
        "then",
        [],
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, None)],
    )
    node = helper.make_node(
        "If", ["flag"], ["v"], name="choose", then_branch=branch, else_branch=branch
    )
    graph = helper.make_graph([node], "g", [], [])
    found = survey(graph, SUPPORTED_OPS)
    assert found.unsupported == {"Atan": ["choose/then_branch/pick", "choose/else_branch/pick"]}
