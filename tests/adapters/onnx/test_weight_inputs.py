"""Recurrent weights given as graph inputs: ONNX's own node test cases as shipped, run by
``onnx_to_torch`` against the expected outputs the onnx package ships with them, and verified
against onnxruntime; the converters that need constant weights say so, naming the input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from xframe_bilstm import UnsupportedFeatureError, WeightShapeError  # noqa: E402
from xframe_bilstm.adapters.onnx.example_inputs import seeded_graph_inputs  # noqa: E402
from xframe_bilstm.adapters.onnx.weight_inputs import graph_weight_inputs  # noqa: E402
from xframe_bilstm.onnx_converters import (  # noqa: E402
    onnx_to_canonical,
    onnx_to_keras,
    onnx_to_torch,
)

pytestmark = pytest.mark.onnx


def _node_cases() -> list:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # other operators' cases warn as they are generated
        cases = collect_testcases(None)
    return [c for c in cases if any(k in c.name for k in ("lstm", "gru", "rnn"))]


NODE_CASES = _node_cases()


def test_the_installed_onnx_ships_eighteen_recurrent_node_cases() -> None:
    assert len(NODE_CASES) == 18, [c.name for c in NODE_CASES]
    assert all(len(c.model.graph.initializer) == 0 for c in NODE_CASES)  # weights are inputs


@pytest.mark.parametrize("case", NODE_CASES, ids=lambda c: c.name)
def test_onnx_node_cases_as_shipped_match_their_expected_outputs(case) -> None:
    # onnxruntime's CPU kernels refuse layout=1, so those three cannot be verified against it;
    # the expected outputs shipped with each case are the independent check for all 18.
    module = onnx_to_torch(case.model, verify="batchwise" not in case.name)
    for inputs, expected in case.data_sets:
        with torch.no_grad():
            outputs = module(*(torch.from_numpy(np.asarray(a)) for a in inputs))
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        assert len(outputs) == len(expected)
        for actual, wanted in zip(outputs, expected):
            np.testing.assert_allclose(actual.numpy(), wanted, rtol=case.rtol, atol=case.atol)


def test_batchwise_node_cases_say_why_onnxruntime_cannot_check_them() -> None:
    case = next(c for c in NODE_CASES if c.name == "test_lstm_batchwise")
    with pytest.raises(UnsupportedFeatureError, match=r"layout=1 .* verify=False"):
        onnx_to_torch(case.model)


def _lstm_with_input_weights(*, initial_b: bool = True):
    """One LSTM node whose W and R are graph inputs (B an initializer or absent)."""
    rng = np.random.default_rng(0)
    hidden, features = 3, 2
    node = helper.make_node(
        "LSTM", ["X", "W", "R", "B" if initial_b else ""], ["Y", "Y_h"], hidden_size=hidden,
        name="lstm_inputs",
    )  # fmt: skip
    inputs = [
        helper.make_tensor_value_info("X", TensorProto.FLOAT, ["time", "batch", features]),
        helper.make_tensor_value_info("W", TensorProto.FLOAT, [1, 4 * hidden, features]),
        helper.make_tensor_value_info("R", TensorProto.FLOAT, [1, 4 * hidden, hidden]),
    ]
    outputs = [
        helper.make_tensor_value_info("Y", TensorProto.FLOAT, None),
        helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, None),
    ]
    bias = numpy_helper.from_array(rng.standard_normal((1, 8 * hidden)).astype(np.float32), "B")
    graph = helper.make_graph(
        [node], "inputs", inputs, outputs, initializer=[bias] if initial_b else []
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)


def test_weights_as_inputs_with_a_constant_bias_match_onnxruntime() -> None:
    model = _lstm_with_input_weights()
    module = onnx_to_torch(model)  # verified against onnxruntime with seeded weights
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 2, 2)).astype(np.float32)
    w = rng.uniform(-0.5, 0.5, (1, 12, 2)).astype(np.float32)
    r = rng.uniform(-0.5, 0.5, (1, 12, 3)).astype(np.float32)
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"X": x, "W": w, "R": r})
    with torch.no_grad():
        actual = module(*(torch.from_numpy(a) for a in (x, w, r)))
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a.numpy(), e, atol=1e-5)


def test_weights_of_the_wrong_shape_are_refused_naming_node_and_input() -> None:
    module = onnx_to_torch(_lstm_with_input_weights(initial_b=False), verify=False)
    x, w, r = torch.zeros(5, 2, 2), torch.zeros(1, 12, 2), torch.zeros(1, 12, 4)
    with pytest.raises(WeightShapeError, match=r"LSTM node 'lstm_inputs': input R expected"):
        module(x, w, r)


def test_example_inputs_give_weights_the_shapes_the_node_needs() -> None:
    model = _lstm_with_input_weights()
    assert set(graph_weight_inputs(model)) == {"W", "R"}
    inputs = seeded_graph_inputs(model, seed=0, batch=2, steps=7)
    assert inputs.x_name == "X" and inputs.time_major
    assert inputs.weight_names == ("W", "R")
    assert inputs.value("W").shape == (1, 12, 2) and inputs.value("R").shape == (1, 12, 3)
    assert np.abs(inputs.value("R")).max() <= 1 / np.sqrt(3)


@pytest.mark.parametrize("convert", [onnx_to_canonical, onnx_to_keras])
def test_converters_that_need_constant_weights_name_the_inputs(convert) -> None:
    with pytest.raises(
        UnsupportedFeatureError,
        match=r"LSTM node 'lstm_inputs': its weight inputs W \('W'\), R \('R'\) are graph "
        r"inputs .* onnx_to_torch runs the graph as it is",
    ):
        convert(_lstm_with_input_weights(), verify=False)


def test_compare_of_a_graph_with_input_weights_names_them() -> None:
    from xframe_bilstm import compare

    case = next(c for c in NODE_CASES if c.name == "test_gru_defaults")
    with pytest.raises(UnsupportedFeatureError, match=r"weight inputs W \('W'\), R \('R'\)"):
        compare(case.model)
