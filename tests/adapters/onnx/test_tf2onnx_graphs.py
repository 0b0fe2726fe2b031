"""Reading the graphs tf2onnx and torch.onnx.export write: ReverseSequence + forward node as
go_backwards, two single-direction nodes as one Bidirectional layer, a fixed time length of
one, and Loop-based exports refused by name.

The tf2onnx graphs are made by ``tests/data/tf2onnx/make_graphs.py`` (tf2onnx is not installed
in the test environment); next to each is what the Keras model itself returned, so each
reading is checked against Keras as well as against onnxruntime (``verify=True``).
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from xframe_bilstm import UnsupportedFeatureError, run_reference  # noqa: E402
from xframe_bilstm.adapters.onnx import run_onnxruntime  # noqa: E402
from xframe_bilstm.onnx_converters import onnx_to_canonical, onnx_to_keras  # noqa: E402

pytestmark = pytest.mark.onnx

DATA = Path(__file__).resolve().parents[2] / "data" / "tf2onnx"
CASES = json.loads((DATA / "cases.json").read_text())
NATIVE = sorted(name for name, kind in CASES.items() if kind == "native")
LOOPS = sorted(name for name, kind in CASES.items() if kind == "loop")
# What each native case must read as: (cell, direction, merge_mode) per layer.
READINGS = {
    "lstm_seq": [("lstm", "forward", "concat")],
    "lstm_last": [("lstm", "forward", "concat")],
    "lstm_states": [("lstm", "forward", "concat")],
    "lstm_back_seq": [("lstm", "backward", "concat")],
    "lstm_back_last": [("lstm", "backward", "concat")],
    "lstm_t1": [("lstm", "forward", "concat")],
    "bi_concat": [("lstm", "bidirectional", "concat")],
    "bi_sum": [("lstm", "bidirectional", "sum")],
    "bi_mul": [("lstm", "bidirectional", "mul")],
    "bi_ave": [("lstm", "bidirectional", "ave")],
    "bi_none": [("lstm", "bidirectional", None)],
    "bi_states": [("lstm", "bidirectional", "concat")],
    "bi_last": [("lstm", "bidirectional", "concat")],
    "bi_t1": [("lstm", "bidirectional", "concat")],
    "bi_stack": [("lstm", "bidirectional", "concat"), ("lstm", "forward", "concat")],
    "tfk_gru_seq": [("gru", "forward", "concat")],
    "tfk_gru_back": [("gru", "backward", "concat")],
    "tfk_bigru": [("gru", "bidirectional", "concat")],
}


def _keras_outputs(name: str) -> tuple[np.ndarray, list[np.ndarray]]:
    saved = np.load(DATA / f"{name}.npz")
    count = sum(key.startswith("output_") for key in saved.files)
    return saved["x"], [saved[f"output_{i}"] for i in range(count)]


def test_every_case_is_in_the_data_and_read_here() -> None:
    assert set(NATIVE) == set(READINGS)
    for name, kind in CASES.items():
        operators = {node.op_type for node in onnx.load(DATA / f"{name}.onnx").graph.node}
        assert ("Loop" in operators) == (kind == "loop"), name


@pytest.mark.parametrize("name", NATIVE)
def test_native_tf2onnx_graphs_read_as_the_keras_model(name: str) -> None:
    stack = onnx_to_canonical(DATA / f"{name}.onnx")  # verified against onnxruntime
    layers = [(layer.cell, layer.direction, layer.merge_mode) for layer in stack.layers]
    assert layers == READINGS[name]
    x, expected = _keras_outputs(name)
    actual = run_reference(stack, x.astype(np.float64))
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, atol=2e-6)


def test_reverse_sequence_before_a_forward_node_is_go_backwards() -> None:
    model = onnx.load(DATA / "lstm_back_seq.onnx")
    operators = [node.op_type for node in model.graph.node]
    assert operators.index("ReverseSequence") < operators.index("LSTM")
    (node,) = [n for n in model.graph.node if n.op_type == "LSTM"]
    assert {a.s for a in node.attribute if a.name == "direction"} <= {b"forward"}
    # Keras returns a go_backwards sequence in processing order: the graph's output is not
    # reversed back, and the reading says so.
    (layer,) = onnx_to_canonical(model).layers
    assert layer.direction == "backward"


@pytest.mark.parametrize("name", ["lstm_back_seq", "bi_t1", "lstm_t1", "tfk_gru_back"])
def test_onnx_to_keras_builds_the_layer_keras_exported(name: str) -> None:
    layer = onnx_to_keras(DATA / f"{name}.onnx")  # verified against onnxruntime
    x, expected = _keras_outputs(name)
    actual = layer(x)
    actual = actual if isinstance(actual, (list, tuple)) else [actual]
    np.testing.assert_allclose(np.asarray(actual[0]), expected[0], atol=2e-6)


@pytest.mark.parametrize("name", LOOPS)
def test_loop_exports_are_refused_naming_the_loop_and_the_native_exports(name: str) -> None:
    model = onnx.load(DATA / f"{name}.onnx")
    (loop,) = [node for node in model.graph.node if node.op_type == "Loop"]
    for convert in (onnx_to_canonical, onnx_to_keras):
        with pytest.raises(UnsupportedFeatureError) as refused:
            convert(model)
        message = str(refused.value)
        assert f"Loop node {loop.name!r}" in message and "MatMul" in message
        assert "tf2onnx.convert.from_keras" in message and "xframe_bilstm.to_onnx" in message


def _torch_export(module, example, **options):
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buffer, dynamo=False, **options)
    return onnx.load_from_string(buffer.getvalue())


class _TwoNodes(torch.nn.Module):
    """A bidirectional layer written as two modules: one reads the sequence reversed."""

    def __init__(self, cell: str, merge: str) -> None:
        super().__init__()
        kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.forward_rnn = kind(3, 4, batch_first=True)
        self.backward_rnn = kind(3, 4, batch_first=True)
        self.merge = merge

    def forward(self, x):
        y_forward, _ = self.forward_rnn(x)
        y_backward, _ = self.backward_rnn(torch.flip(x, [1]))
        y_backward = torch.flip(y_backward, [1])  # back into input time, as Keras does
        if self.merge == "concat":
            return torch.cat([y_forward, y_backward], dim=-1)
        return y_forward + y_backward


@pytest.mark.parametrize(("cell", "merge"), [("lstm", "concat"), ("gru", "sum")])
def test_two_single_direction_nodes_are_one_bidirectional_layer(cell: str, merge: str) -> None:
    torch.manual_seed(0)
    module = _TwoNodes(cell, merge).eval()
    x = torch.randn(2, 6, 3)
    model = _torch_export(module, x, input_names=["x"], dynamic_axes={"x": {0: "batch", 1: "time"}})
    assert sum(node.op_type == cell.upper() for node in model.graph.node) == 2
    stack = onnx_to_canonical(model)  # verified against onnxruntime
    (layer,) = stack.layers
    assert (layer.direction, layer.merge_mode) == ("bidirectional", merge)
    with torch.no_grad():
        expected = module(x).numpy()
    (actual,) = run_reference(stack, x.numpy().astype(np.float64))
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_nodes_on_one_sequence_that_are_no_bidirectional_layer_are_named() -> None:
    module = _TwoNodes("lstm", "concat")
    module.backward_rnn = torch.nn.LSTM(3, 5, batch_first=True)  # another size
    model = _torch_export(module.eval(), torch.randn(2, 6, 3), input_names=["x"])
    with pytest.raises(UnsupportedFeatureError, match="not the two directions of one Keras"):
        onnx_to_canonical(model)


def test_a_torch_export_with_a_fixed_time_length_of_one_is_read() -> None:
    torch.manual_seed(0)
    rnn = torch.nn.GRU(3, 4, batch_first=True, bidirectional=True).eval()
    x = torch.randn(2, 1, 3)
    model = _torch_export(rnn, x, input_names=["x"])  # batch 2 and time 1, both fixed
    stack = onnx_to_canonical(model)
    with torch.no_grad():
        expected, _ = rnn(x)
    (actual,) = run_reference(stack, x.numpy().astype(np.float64))
    np.testing.assert_allclose(actual, expected.numpy(), atol=1e-5)
    (graph_output, *_) = run_onnxruntime(model, x.numpy())
    np.testing.assert_allclose(actual, graph_output, atol=1e-5)


@pytest.mark.parametrize("name", ["lstm_back_seq", "lstm_t1", "bi_none"])
def test_compare_runs_tf2onnx_graphs_as_onnxruntime_runs_them(name: str) -> None:
    from xframe_bilstm import compare

    report = compare(DATA / f"{name}.onnx", frameworks=["torch"])
    assert bool(report), report.lines()
    assert "onnxruntime[cpu,float32]@original" in [run.label for run in report.runs]
    if name == "lstm_t1":  # drawn with the one step the graph's input fixes
        assert all(line.startswith("PASSED") for line in report.lines())


def _reverse_and_forward_nodes() -> onnx.ModelProto:
    """A forward and a reverse-direction LSTM node on one time-major input, their Y joined
    by Concat on features: a Bidirectional layer in input time, as Keras merges it."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    h, d = 3, 2
    initializers = [
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2])]
    for name, direction in (("fwd", "forward"), ("bwd", "reverse")):
        for tensor, shape in (("W", (1, 4 * h, d)), ("R", (1, 4 * h, h)), ("B", (1, 8 * h))):
            values = rng.uniform(-0.5, 0.5, shape).astype(np.float32)
            initializers.append(numpy_helper.from_array(values, f"{tensor}_{name}"))
        nodes.append(
            helper.make_node(
                "LSTM",
                ["xt", f"W_{name}", f"R_{name}", f"B_{name}"],
                [f"Y_{name}"],
                name=f"lstm_{name}",
                hidden_size=h,
                direction=direction,
            )
        )
        nodes.append(helper.make_node("Squeeze", [f"Y_{name}", "axis1"], [f"y_{name}"]))
    nodes.append(helper.make_node("Concat", ["y_fwd", "y_bwd"], ["yt"], axis=-1))
    nodes.append(helper.make_node("Transpose", ["yt"], ["y"], perm=[1, 0, 2]))
    graph = helper.make_graph(
        nodes,
        "pair",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "time", 2 * h])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def test_a_forward_and_a_reverse_node_joined_by_concat_are_one_bidirectional_layer() -> None:
    model = _reverse_and_forward_nodes()
    (layer,) = onnx_to_canonical(model).layers  # verified against onnxruntime
    assert (layer.direction, layer.merge_mode) == ("bidirectional", "concat")
    x = np.random.default_rng(2).standard_normal((2, 5, 2)).astype(np.float32)
    (expected,) = run_onnxruntime(model, x)
    (actual,) = run_reference(onnx_to_canonical(model), x.astype(np.float64))
    np.testing.assert_allclose(actual, expected, atol=1e-5)


class _ThreeNodes(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnns = torch.nn.ModuleList(torch.nn.GRU(3, 2, batch_first=True) for _ in range(3))

    def forward(self, x):
        return torch.cat([rnn(x)[0] for rnn in self.rnns], dim=-1)


def test_three_nodes_on_one_sequence_are_refused_by_name() -> None:
    model = _torch_export(_ThreeNodes().eval(), torch.randn(2, 6, 3), input_names=["x"])
    with pytest.raises(UnsupportedFeatureError, match="at most two directions") as refused:
        onnx_to_canonical(model)
    assert str(refused.value).count("GRU node") == 3
