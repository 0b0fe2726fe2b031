"""If nodes in onnx_to_torch: both branches as submodules, the one run chosen by the
condition at run time, checked against onnxruntime and against the torch modules exported."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from xframe_bilstm import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.adapters.onnx.example_inputs import seeded_graph_inputs  # noqa: E402
from xframe_bilstm.onnx_converters import onnx_to_canonical, onnx_to_torch  # noqa: E402

pytestmark = pytest.mark.onnx


class _Switch(torch.nn.Module):
    """An LSTM or a GRU, chosen by a flag: scripted, it exports as an If node."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(3, 4, batch_first=True)
        self.gru = torch.nn.GRU(3, 4, batch_first=True)

    def forward(self, x, flag: torch.Tensor):
        if bool(flag):
            y, _ = self.lstm(x)
        else:
            y, _ = self.gru(x)
        return y


@pytest.fixture(scope="module")
def switch() -> tuple[torch.nn.Module, onnx.ModelProto]:
    torch.manual_seed(0)
    module = _Switch().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            torch.jit.script(module),
            (torch.zeros(2, 5, 3), torch.tensor(True)),
            buffer,
            dynamo=False,
            input_names=["x", "flag"],
            dynamic_axes={"x": {0: "batch", 1: "time"}},
        )
    return module, onnx.load_from_string(buffer.getvalue())


def test_the_scripted_export_keeps_its_recurrent_nodes_in_if_branches(switch) -> None:
    _, model = switch
    assert [n.op_type for n in model.graph.node if n.op_type in ("LSTM", "GRU", "If")] == ["If"]


@pytest.mark.parametrize("flag", [True, False])
def test_an_if_on_a_graph_input_runs_the_branch_it_picks(switch, flag: bool) -> None:
    source, model = switch
    module = onnx_to_torch(model)  # verified on both values of the flag
    assert len(module.branches) == 1 and len(module.branches[0]) == 2
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((3, 6, 3)).astype(np.float32))
    with torch.no_grad():
        actual = module(x, torch.tensor(flag))
        expected, _ = (source.lstm if flag else source.gru)(x)
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), atol=1e-6)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (runtime,) = session.run(None, {"x": x.numpy(), "flag": np.array(flag)})
    np.testing.assert_allclose(actual.numpy(), runtime, atol=1e-5)


def test_verification_feeds_both_values_of_a_boolean_input(switch) -> None:
    _, model = switch
    inputs = seeded_graph_inputs(model, seed=0, batch=2, steps=7)
    assert inputs.flag_names == ("flag",)
    variants = inputs.flag_variants()
    assert [bool(v.value("flag")) for v in variants] == [True, False]
    assert all(np.array_equal(v.value("x"), inputs.value("x")) for v in variants)


def _constant_condition_model(condition: bool):
    """An If whose condition is a Constant node; its branches run different RNNs on X."""
    rng = np.random.default_rng(0)
    branches = {}
    for name, activation in (("then_branch", "Tanh"), ("else_branch", "Relu")):
        w = numpy_helper.from_array(rng.standard_normal((1, 2, 3)).astype(np.float32), f"W_{name}")
        r = numpy_helper.from_array(rng.standard_normal((1, 2, 2)).astype(np.float32), f"R_{name}")
        node = helper.make_node(
            "RNN",
            ["X", f"W_{name}", f"R_{name}"],
            ["", f"h_{name}"],
            hidden_size=2,
            activations=[activation],
            name=f"rnn_{name}",
        )
        out = helper.make_tensor_value_info(f"h_{name}", TensorProto.FLOAT, None)
        branches[name] = helper.make_graph([node], name, [], [out], [w, r])
    cond = helper.make_node(
        "Constant",
        [],
        ["cond"],
        value=numpy_helper.from_array(np.array(condition), "cond"),
    )
    choose = helper.make_node("If", ["cond"], ["h"], name="choose", **branches)
    graph = helper.make_graph(
        [cond, choose],
        "constant_if",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["time", "batch", 3])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, "batch", 2])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)


@pytest.mark.parametrize("condition", [True, False])
def test_an_if_on_a_constant_runs_its_branch_and_matches_onnxruntime(condition: bool) -> None:
    model = _constant_condition_model(condition)
    module = onnx_to_torch(model)  # verified against onnxruntime
    x = np.random.default_rng(2).standard_normal((4, 2, 3)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"X": x})
    with torch.no_grad():
        actual = module(torch.from_numpy(x))
    np.testing.assert_allclose(actual.numpy(), expected, atol=1e-6)
    other = _constant_condition_model(not condition)
    (different,) = ort.InferenceSession(
        other.SerializeToString(), providers=["CPUExecutionProvider"]
    ).run(None, {"X": x})
    assert np.abs(different - expected).max() > 1e-3  # the branches compute different things


def test_converters_without_control_flow_name_the_nodes_in_branches() -> None:
    with pytest.raises(UnsupportedFeatureError) as refused:
        onnx_to_canonical(_constant_condition_model(True), verify=False)
    message = str(refused.value)
    assert "If node 'choose' (" in message
    assert "then_branch: RNN node 'rnn_then_branch'" in message
    assert "else_branch: RNN node 'rnn_else_branch'" in message
    assert "onnx_to_torch runs graphs whose If nodes hold them" in message
