"""diagnose() of ONNX sides: the graph runs on onnxruntime as given, and a wrong export is
named with the codes of any other port. Each wrong export is a real one (our ``to_onnx`` of
a Keras layer, ``torch.onnx.export`` of an nn.LSTM) with its initializers edited by
``onnx.numpy_helper`` the way an exporter gets them wrong; the errors the diagnosis reports
are checked against onnxruntime and Keras run here on the same input."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402

from xframe_bilstm import to_onnx  # noqa: E402
from xframe_bilstm.adapters.keras import canonical_to_keras  # noqa: E402
from xframe_bilstm.diagnosis import diagnose  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.factories import random_stack  # noqa: E402
from xframe_bilstm.gates import reorder_gates  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch, pytest.mark.onnx]

UNITS = 4


@pytest.fixture(scope="module")
def bilstm():
    """A Keras Bidirectional LSTM returning its sequence and states, and our export of it."""
    stack = random_stack(
        np.random.default_rng(1),
        "lstm",
        3,
        UNITS,
        dtype=np.float32,
        direction="bidirectional",
        return_state=True,
    )
    layer = canonical_to_keras(stack)
    return layer, to_onnx(layer)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(3).standard_normal((2, 7, 3)).astype(np.float32)


def edited(proto, edit):
    """A copy of ``proto`` whose LSTM initializers W, R, B (names ending so) are replaced by
    ``edit(kind, array)``."""
    proto = copy.deepcopy(proto)
    for initializer in proto.graph.initializer:
        kind = initializer.name.rsplit("/", 1)[-1]
        if kind in ("W", "R", "B"):
            array = edit(kind, numpy_helper.to_array(initializer))
            initializer.CopyFrom(numpy_helper.from_array(array, initializer.name))
    return proto


def keras_gates_written(kind, array):
    """Keras's gate order i,f,c,o written where ONNX reads i,o,f,c (B holds two halves)."""
    if kind == "B":
        halves = np.split(array, 2, axis=-1)
        return np.concatenate([reorder_gates(h, "iofc", "ifco") for h in halves], axis=-1)
    return reorder_gates(array, "iofc", "ifco", axis=1)


def bias_doubled(kind, array):
    """Keras's one bias written into both halves of B (Wb and Rb), as twice the sum."""
    if kind != "B":
        return array
    summed = array[:, : 4 * UNITS] + array[:, 4 * UNITS :]
    return np.concatenate([summed, summed], axis=-1)


def directions_swapped(kind, array):
    return array[::-1].copy()


def onnxruntime_outputs(proto, x):
    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return session.run(None, {session.get_inputs()[0].name: x})


def keras_outputs(layer, x):
    return [np.asarray(a) for a in layer(x)]


def max_error(expected, actual):
    return max(float(np.abs(np.float64(e) - np.float64(a)).max()) for e, a in zip(expected, actual))


def test_our_export_is_equivalent_both_ways(bilstm, x) -> None:
    layer, proto = bilstm
    assert diagnose(layer, proto, inputs=x).code == "equivalent"
    assert diagnose(proto, layer, inputs=x).code == "equivalent"


@pytest.mark.parametrize(
    ("edit", "code", "evidence"),
    [
        (keras_gates_written, "gate_order", "i,f,c,o read as i,c,o,f"),
        (bias_doubled, "bias_double_counted", "layer 0 forward, layer 0 backward"),
        (directions_swapped, "directions_swapped", "the forward and backward weights"),
    ],
    ids=["keras-gate-order", "bias-doubled", "directions-swapped"],
)
def test_a_wrong_export_is_named(bilstm, x, edit, code, evidence) -> None:
    layer, proto = bilstm
    wrong = edited(proto, edit)
    result = diagnose(layer, wrong, inputs=x)
    assert (result.code, result.causes) == (code, (code,)), result.message
    assert evidence in result.message
    assert result.error_after_fix is not None and result.error_after_fix < 1e-5
    # The graph ran on onnxruntime: the error is the one between Keras and onnxruntime.
    error = max_error(keras_outputs(layer, x), onnxruntime_outputs(wrong, x))
    assert error > 0.05
    assert result.max_abs_error == pytest.approx(error, rel=1e-6)


def test_a_wrong_export_as_the_expected_side(bilstm, x) -> None:
    layer, proto = bilstm
    result = diagnose(edited(proto, keras_gates_written), layer, inputs=x)
    assert result.code == "gate_order", result.message
    assert "(layer 0 forward, layer 0 backward)" in result.message
    error = max_error(onnxruntime_outputs(edited(proto, keras_gates_written), x), layer(x))
    assert result.max_abs_error == pytest.approx(error, rel=1e-6)


@pytest.fixture(scope="module")
def torch_export(tmp_path_factory):
    """A batch-first bidirectional nn.LSTM and its TorchScript export (``output`` then the
    stacked ``h_n`` and ``c_n``)."""
    torch.manual_seed(0)
    module = torch.nn.LSTM(3, UNITS, bidirectional=True, batch_first=True).eval()
    path = tmp_path_factory.mktemp("diagnose-onnx") / "bilstm.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(2, 5, 3),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["output", "h_n", "c_n"],
            dynamic_axes={"x": {0: "batch", 1: "time"}},
        )
    return module, path


def torch_gates_written(proto):
    """torch's gate order i,f,g,o written where ONNX reads i,o,f,c: the exporter's reorder
    undone on every LSTM weight and bias."""
    proto = copy.deepcopy(proto)
    lstm = next(node for node in proto.graph.node if node.op_type == "LSTM")
    weights = set(lstm.input[1:4])
    for initializer in proto.graph.initializer:
        if initializer.name in weights:
            array = numpy_helper.to_array(initializer)
            if array.shape[-1] == 8 * UNITS:  # B: Wb then Rb
                halves = np.split(array, 2, axis=-1)
                array = np.concatenate([reorder_gates(h, "iofc", "ifco") for h in halves], -1)
            else:
                array = reorder_gates(array, "iofc", "ifco", axis=1)
            initializer.CopyFrom(numpy_helper.from_array(array, initializer.name))
    return proto


def test_a_torch_export_against_its_module(torch_export, x, tmp_path: Path) -> None:
    module, path = torch_export
    assert diagnose(module, path, inputs=x).code == "equivalent"
    wrong = torch_gates_written(onnx.load(str(path)))
    result = diagnose(module, wrong, inputs=x)
    assert result.code == "gate_order", result.message
    assert result.error_after_fix is not None and result.error_after_fix < 1e-5
    with torch.no_grad():
        expected = module(torch.as_tensor(x))[0].numpy()
    error = float(np.abs(expected - onnxruntime_outputs(wrong, x)[0]).max())
    assert result.max_abs_error == pytest.approx(error, rel=1e-6)


def test_a_whole_model_against_a_layer_is_refused(bilstm, x) -> None:
    layer, _ = bilstm
    ids = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Embedding(10, 3)(ids)
    model = keras.Model(ids, keras.layers.Dense(2)(keras.layers.LSTM(UNITS)(hidden)))
    with pytest.raises(UnsupportedFeatureError, match=r"actual: .* is a whole model"):
        diagnose(layer, model, inputs=x)


# --------------------------------------------------------------------------- native modules


@pytest.mark.parametrize(
    ("direction", "sequences"),
    [("bidirectional", True), ("forward", True), ("forward", False)],
    ids=["bilstm-sequence", "lstm-sequence", "lstm-last"],
)
def test_a_native_module_runs_by_its_own_forward_with_lengths(direction, sequences) -> None:
    """nn.LSTM on a packed sequence writes zeros at padded steps where a plain Keras LSTM
    repeats its last output: matched by meaning (h_n rows), compared at valid steps."""
    from xframe_bilstm import keras_to_torch

    stack = random_stack(
        np.random.default_rng(1),
        "lstm",
        3,
        UNITS,
        dtype=np.float32,
        direction=direction,
        return_state=True,
        return_sequences=sequences,
    )
    layer = canonical_to_keras(stack)
    native = keras_to_torch(layer, verify=False).rnns[0]
    assert diagnose(layer, native, lengths=[7, 4]).code == "equivalent"
    assert diagnose(native, layer, lengths=[7, 4]).code == "equivalent"
    with torch.no_grad():
        native.bias_hh_l0.copy_(native.bias_ih_l0)  # torch's two biases: one copied twice
    result = diagnose(layer, native, lengths=[7, 4])
    assert result.code == "bias_double_counted", result.message
