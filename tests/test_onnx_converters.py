"""Exported ONNX graphs on onnxruntime against the float64 reference, and the export options."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from xframe_bilstm import (  # noqa: E402
    UnsupportedFeatureError,
    WeightShapeError,
    compare_outputs,
    derived_tolerance,
    output_names,
    run_reference,
)
from xframe_bilstm.adapters.onnx import (  # noqa: E402
    initial_state_input_names,
    newest_runtime_opset,
    run_onnxruntime,
)
from xframe_bilstm.canonical import initial_state_count  # noqa: E402
from xframe_bilstm.factories import random_stack  # noqa: E402
from xframe_bilstm.onnx_converters import onnx_to_torch, to_onnx  # noqa: E402

pytestmark = pytest.mark.onnx

CELLS = [("lstm", None), ("gru", True), ("gru", False), ("simple_rnn", None)]
LENGTHS = [5, 2, 1]


def _cell_id(cell: str, reset_after: bool | None) -> str:
    return cell if reset_after is None else f"{cell}_reset_after={reset_after}"


def _assert_matches_reference(stack, model, x, *, states=None, lengths=None) -> None:
    expected = run_reference(stack, x, initial_states=states, lengths=lengths)
    actual = run_onnxruntime(model, x, initial_states=states, lengths=lengths)
    tolerance = derived_tolerance(stack, x, initial_states=states, lengths=lengths)
    result = compare_outputs(output_names(stack), expected, actual, atol=tolerance)
    assert result, result.message()


def _matrix():
    for (cell, reset_after), direction, merge, layers in itertools.product(
        CELLS,
        ["forward", "backward", "bidirectional"],
        ["concat", "sum", "mul", "ave", None],
        [1, 2],
    ):
        if direction != "bidirectional" and merge != "concat":
            continue
        flags = [(True, False), (False, True)] if merge in ("concat", None) else [(True, True)]
        for return_sequences, return_state in flags:
            yield pytest.param(
                cell,
                reset_after,
                direction,
                merge,
                layers,
                return_sequences,
                return_state,
                id=f"{_cell_id(cell, reset_after)}-{direction}-{merge}-L{layers}"
                f"-seq={return_sequences}-state={return_state}",
            )


@pytest.mark.parametrize(
    ("cell", "reset_after", "direction", "merge", "layers", "return_sequences", "return_state"),
    list(_matrix()),
)
def test_export_matches_reference_with_states_and_lengths(
    cell, reset_after, direction, merge, layers, return_sequences, return_state
) -> None:
    rng = np.random.default_rng(11)
    stack = random_stack(
        rng,
        cell,
        3,
        4,
        num_layers=layers,
        direction=direction,
        merge_mode=merge,
        reset_after=reset_after,
        return_sequences=return_sequences,
        return_state=return_state,
    )
    x = rng.standard_normal((3, 5, 3))
    states = [rng.standard_normal((3, 4)) for _ in range(initial_state_count(stack))]
    model = to_onnx(stack, with_initial_states=True, with_lengths=True)
    # One graph, three ways: masked with given states, unmasked, and zero states by default.
    _assert_matches_reference(stack, model, x, states=states, lengths=LENGTHS)
    _assert_matches_reference(stack, model, x, states=states)
    _assert_matches_reference(stack, model, x)


def _bias_cases():
    for (cell, reset_after), bias in itertools.product(CELLS, ["none", "single", "split"]):
        # GRU reset_after=True has a split bias, reset_after=False a single one.
        if cell != "gru" or bias == "none" or (bias == "split") == reset_after:
            yield pytest.param(cell, reset_after, bias, id=f"{_cell_id(cell, reset_after)}-{bias}")


@pytest.mark.parametrize(("cell", "reset_after", "bias"), list(_bias_cases()))
def test_bias_layouts(cell, reset_after, bias) -> None:
    rng = np.random.default_rng(5)
    stack = random_stack(
        rng, cell, 3, 4, direction="bidirectional", reset_after=reset_after, bias=bias
    )
    model = to_onnx(stack, opset=14)
    _assert_matches_reference(stack, model, rng.standard_normal((2, 6, 3)))
    has_b = [
        len(node.input) > 3 and node.input[3] != ""
        for node in model.graph.node
        if node.op_type in ("LSTM", "GRU", "RNN")
    ]
    assert has_b == [bias != "none"]


def _opset_cases():
    newest = newest_runtime_opset()
    for opset in (7, 14, newest):
        for cell, reset_after in CELLS:
            yield pytest.param(
                opset, cell, reset_after, id=f"opset{opset}-{_cell_id(cell, reset_after)}"
            )


@pytest.mark.parametrize(("opset", "cell", "reset_after"), list(_opset_cases()))
def test_opsets(opset, cell, reset_after) -> None:
    rng = np.random.default_rng(opset)
    # Opset 7 cannot reverse time, so its stack avoids go_backwards sequences.
    first = random_stack(
        rng, cell, 3, 4, direction="bidirectional", merge_mode="ave", reset_after=reset_after
    ).layers[0]
    second = random_stack(
        rng, cell, 4, 4, direction="backward" if opset >= 10 else "forward", reset_after=reset_after
    ).layers[0]
    stack = dataclasses.replace(
        random_stack(rng, cell, 3, 4), layers=(first, second), return_state=True
    )
    model = to_onnx(stack, opset=opset, with_initial_states=True, with_lengths=opset >= 11)
    assert model.opset_import[0].version == opset
    x = rng.standard_normal((2, 4, 3))
    states = [rng.standard_normal((2, 4)) for _ in range(initial_state_count(stack))]
    _assert_matches_reference(
        stack, model, x, states=states, lengths=[4, 2] if opset >= 11 else None
    )


def test_default_opset_is_newest_runtime_opset() -> None:
    stack = random_stack(np.random.default_rng(0), "lstm", 2, 3)
    assert to_onnx(stack).opset_import[0].version == newest_runtime_opset() >= 14


@pytest.mark.parametrize(
    ("activation", "recurrent_activation"),
    [
        ("relu", "hard_sigmoid_keras3"),
        ("softsign", "hard_sigmoid_keras2"),
        ("elu", "hard_sigmoid_keras3"),
        ("linear", "hard_sigmoid_keras3"),
        ("softplus", "sigmoid"),
        ("tanh", "linear"),
    ],
)
@pytest.mark.parametrize("cell", ["lstm", "gru", "simple_rnn"])
def test_activations(cell, activation, recurrent_activation) -> None:
    rng = np.random.default_rng(3)
    stack = random_stack(
        rng,
        cell,
        3,
        2,
        direction="bidirectional",
        activation=activation,
        recurrent_activation=recurrent_activation,
    )
    # Small inputs keep linear cells bounded over the few steps.
    _assert_matches_reference(stack, to_onnx(stack), rng.standard_normal((2, 4, 3)) * 0.5)


def test_hard_sigmoid_constants_are_explicit() -> None:
    rng = np.random.default_rng(0)
    stack = random_stack(
        rng,
        "lstm",
        2,
        2,
        direction="bidirectional",
        activation="elu",
        recurrent_activation="hard_sigmoid_keras3",
    )
    (node,) = [n for n in to_onnx(stack).graph.node if n.op_type == "LSTM"]
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert [a.decode() for a in attributes["activations"]] == ["HardSigmoid", "Elu", "Elu"] * 2
    # One alpha per activation that reads one, in order; betas only for HardSigmoid.
    np.testing.assert_allclose(attributes["activation_alpha"], [1 / 6, 1, 1] * 2, rtol=1e-7)
    np.testing.assert_allclose(attributes["activation_beta"], [0.5, 0.5])


@pytest.mark.parametrize("activation", ["selu", "silu", "exponential"])
def test_activation_onnx_lacks_is_refused(activation) -> None:
    stack = random_stack(np.random.default_rng(0), "gru", 2, 2, activation=activation)
    with pytest.raises(UnsupportedFeatureError, match=activation):
        to_onnx(stack)


def test_stateful_is_refused() -> None:
    stack = random_stack(np.random.default_rng(0), "lstm", 2, 2)
    with pytest.raises(UnsupportedFeatureError, match="stateful"):
        to_onnx(dataclasses.replace(stack, stateful=True))


@pytest.mark.parametrize(
    ("direction", "opset", "with_lengths", "needed"),
    [
        ("backward", 9, False, "opset >= 10"),
        ("forward", 10, True, "opset >= 11"),
        ("forward", 6, False, "opset 7"),
    ],
    ids=["go_backwards-opset9", "lengths-opset10", "opset6"],
)
def test_too_old_opsets_are_refused(direction, opset, with_lengths, needed) -> None:
    stack = random_stack(np.random.default_rng(0), "lstm", 2, 2, direction=direction)
    with pytest.raises(UnsupportedFeatureError, match=needed):
        to_onnx(stack, opset=opset, with_lengths=with_lengths)


def test_graph_interface() -> None:
    rng = np.random.default_rng(0)
    stack = random_stack(
        rng,
        "lstm",
        3,
        4,
        num_layers=2,
        direction="bidirectional",
        merge_mode=None,
        return_state=True,
    )
    model = to_onnx(stack, with_initial_states=True, with_lengths=True)
    graph = model.graph
    names = [i.name for i in graph.input]
    assert names == ["x", *initial_state_input_names(stack), "lengths"]
    assert names[1:3] == ["layer0_initial_h_forward", "layer0_initial_c_forward"]
    assert [o.name for o in graph.output] == list(output_names(stack))
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "time", 3]
    assert graph.input[-1].type.tensor_type.elem_type == onnx.TensorProto.INT32
    nodes = [n for n in graph.node if n.op_type == "LSTM"]
    assert len(nodes) == 2 and all(n.input[4] == "lengths" for n in nodes)
    for node in nodes:  # layout=0 (the default) everywhere: onnxruntime rejects layout=1
        assert "layout" not in [a.name for a in node.attribute]


def test_weights_use_onnx_gate_order_and_bias_rows() -> None:
    rng = np.random.default_rng(0)
    stack = random_stack(rng, "lstm", 3, 2, bias="split")
    weights = stack.layers[0].weights[0]
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in to_onnx(stack).graph.initializer}
    i, f, c, o = np.split(weights.kernel, 4, axis=1)
    np.testing.assert_array_equal(
        initializers["layer0/W"][0], np.concatenate([i, o, f, c], axis=1).T.astype(np.float32)
    )
    bi, bf, bc, bo = np.split(weights.bias, 4, axis=1)
    np.testing.assert_array_equal(
        initializers["layer0/B"][0],
        np.concatenate([bi, bo, bf, bc], axis=1).reshape(-1).astype(np.float32),
    )


def test_path_is_written_atomically(tmp_path) -> None:
    stack = random_stack(np.random.default_rng(0), "gru", 2, 3)
    target = tmp_path / "gru.onnx"
    model = to_onnx(stack, target)
    assert onnx.load(str(target)) == model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gru.onnx"]


def test_exports_a_torch_module() -> None:
    rnn = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    with torch.no_grad():
        expected, _ = rnn(torch.from_numpy(x))
    (actual,) = run_onnxruntime(to_onnx(rnn), x)
    np.testing.assert_allclose(actual, expected.numpy(), atol=1e-5)


def _keras_layers(keras):
    return {
        "bi-gru-reset_before-sum-states": keras.layers.Bidirectional(
            keras.layers.GRU(4, return_sequences=True, return_state=True, reset_after=False),
            merge_mode="sum",
        ),
        "lstm-go_backwards-hard_sigmoid": keras.layers.LSTM(
            4, go_backwards=True, return_sequences=True, recurrent_activation="hard_sigmoid"
        ),
    }


@pytest.mark.keras
@pytest.mark.parametrize(
    "which", ["bi-gru-reset_before-sum-states", "lstm-go_backwards-hard_sigmoid"]
)
def test_keras_to_onnx_to_torch(which) -> None:
    keras = pytest.importorskip("keras")
    from xframe_bilstm.adapters.keras import keras_to_canonical, run_keras
    from xframe_bilstm.onnx_converters import onnx_to_canonical, onnx_to_torch

    keras.utils.set_random_seed(0)
    layer = _keras_layers(keras)[which]
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    expected = run_keras(layer, x)
    model = to_onnx(layer)
    with torch.no_grad():
        actual = onnx_to_torch(model)(torch.from_numpy(x))
    actual = actual if isinstance(actual, tuple) else (actual,)
    stack = keras_to_canonical(layer)
    tolerance = derived_tolerance(stack, x)
    result = compare_outputs(
        output_names(stack), expected, [a.numpy() for a in actual], atol=tolerance
    )
    assert result, result.message()
    back = onnx_to_canonical(model)
    assert output_names(back) == output_names(stack)

    def summary(layers):
        return [(x.direction, x.merge_mode, x.recurrent_activation) for x in layers]

    assert summary(back.layers) == summary(stack.layers)


@pytest.mark.keras
def test_torch_to_onnx_to_keras() -> None:
    import io
    import warnings

    keras = pytest.importorskip("keras")
    from xframe_bilstm.adapters.keras import run_keras
    from xframe_bilstm.onnx_converters import onnx_to_keras

    torch.manual_seed(0)
    rnn = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True).eval()
    x = torch.randn(2, 5, 3)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            rnn,
            (x,),
            buffer,
            dynamo=False,
            input_names=["input"],
            dynamic_axes={"input": {0: "batch", 1: "time"}},
        )
    layer = onnx_to_keras(buffer.getvalue())
    assert isinstance(layer, keras.Sequential)
    with torch.no_grad():
        expected, _ = rnn(x)
    (actual,) = run_keras(layer, x.numpy())
    np.testing.assert_allclose(actual, expected.numpy(), atol=1e-5)


def test_onnx_to_keras_names_what_keras_lacks() -> None:
    model = to_onnx(random_stack(np.random.default_rng(0), "lstm", 2, 2))
    (node,) = [n for n in model.graph.node if n.op_type == "LSTM"]
    node.attribute.append(onnx.helper.make_attribute("clip", 2.0))
    from xframe_bilstm.onnx_converters import onnx_to_keras

    with pytest.raises(UnsupportedFeatureError, match="clip=2"):
        onnx_to_keras(model)


def test_onnx_to_keras_of_a_bare_lstm_node_says_why_nothing_matched() -> None:
    # One LSTM node between the graph's input and outputs, no glue: Y is 4-D.
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
        for name, shape in (("W", (1, 16, 3)), ("R", (1, 16, 4)))
    ]
    node = helper.make_node("LSTM", ["x", "W", "R"], ["Y", "Y_h", "Y_c"], hidden_size=4)
    float_ = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        [node],
        "bare",
        [helper.make_tensor_value_info("x", float_, ["time", "batch", 3])],
        [helper.make_tensor_value_info(name, float_, None) for name in ("Y", "Y_h", "Y_c")],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    from xframe_bilstm.onnx_converters import onnx_to_keras

    with pytest.raises(UnsupportedFeatureError) as error:
        onnx_to_keras(model)
    message = str(error.value)
    assert "closest: ," not in message and "off by inf" not in message
    assert "LSTM node 'Y'" in message and "return_sequences and return_state" in message
    assert "(5, 1, 3, 4)" in message and "raw Y" in message


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_zero_masked_outputs_export_matches_reference(direction: str) -> None:
    rng = np.random.default_rng(12)
    stack = random_stack(rng, "lstm", 3, 4, direction=direction, zero_masked_outputs=True)
    x = rng.standard_normal((3, 5, 3)).astype(np.float32)
    model = to_onnx(stack, with_lengths=True)
    _assert_matches_reference(stack, model, x, lengths=LENGTHS)


def test_zero_masked_last_output_with_lengths_is_refused() -> None:
    stack = random_stack(
        np.random.default_rng(0), "gru", 3, 4, zero_masked_outputs=True, return_sequences=False
    )
    with pytest.raises(UnsupportedFeatureError, match="zero_masked_outputs"):
        to_onnx(stack, with_lengths=True)
    to_onnx(stack)  # without lengths nothing is masked


# ------------------------------------------------------------------------ verify=True

# Far past float32 rounding on these small models, far below a gate's range.
NUDGE = 0.05


def _torch_export(module, args, input_names, dynamic_axes) -> bytes:
    """A foreign graph: torch.onnx.export's own tracing of ``module``."""
    import io
    import warnings

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            buffer,
            dynamo=False,
            input_names=input_names,
            dynamic_axes=dynamic_axes,
        )
    return buffer.getvalue()


def _nudged_graph(model_bytes: bytes, name_contains: str) -> onnx.ModelProto:
    """The graph with NUDGE added to the first entry of the first initializer so named."""
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    for initializer in model.graph.initializer:
        array = numpy_helper.to_array(initializer)
        if name_contains in initializer.name and array.dtype == np.float32 and array.size > 4:
            array = array.copy()
            array.flat[0] += NUDGE
            initializer.CopyFrom(numpy_helper.from_array(array, initializer.name))
            return model
    raise AssertionError(f"no float initializer named like {name_contains!r}")


def _time_major_lstm_graph():
    """A bidirectional two-layer nn.LSTM (time-major) exported with its h0, c0 as inputs."""
    torch.manual_seed(7)
    rnn = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).eval()
    x, h0, c0 = torch.randn(5, 2, 3), torch.randn(4, 2, 4), torch.randn(4, 2, 4)
    graph = _torch_export(
        rnn,
        (x, (h0, c0)),
        ["x", "h0", "c0"],
        {"x": {0: "time", 1: "batch"}, "h0": {1: "batch"}, "c0": {1: "batch"}},
    )
    return rnn, graph


def test_onnx_to_torch_verifies_a_time_major_torch_export_with_state_inputs() -> None:
    from xframe_bilstm.onnx_converters import onnx_to_torch

    rnn, graph = _time_major_lstm_graph()
    module = onnx_to_torch(graph)  # verify=True: onnxruntime on the graph vs the module
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 3, 3)).astype(np.float32)
    h0, c0 = (rng.standard_normal((4, 3, 4)).astype(np.float32) for _ in range(2))
    with torch.no_grad():
        expected, (h_n, c_n) = rnn(
            torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0))
        )
        actual = module(torch.from_numpy(x), torch.from_numpy(h0), torch.from_numpy(c0))
    for e, a in zip((expected, h_n, c_n), actual):
        np.testing.assert_allclose(a.numpy(), e.numpy(), atol=1e-5)


def test_a_tampered_graph_is_the_original_that_onnx_to_torch_verifies_against() -> None:
    from xframe_bilstm.adapters.onnx import run_onnxruntime
    from xframe_bilstm.onnx_converters import onnx_to_torch

    torch.manual_seed(8)
    rnn = torch.nn.GRU(3, 4, batch_first=True).eval()
    graph = _torch_export(rnn, (torch.randn(2, 5, 3),), ["x"], {"x": {0: "batch", 1: "time"}})
    tampered = _nudged_graph(graph, "")
    module = onnx_to_torch(tampered)  # the tampered graph is what the module must compute
    x = np.random.default_rng(2).standard_normal((2, 6, 3)).astype(np.float32)
    with torch.no_grad():
        actual, _ = module(torch.from_numpy(x))
        untampered, _ = rnn(torch.from_numpy(x))
    (graph_output, _) = run_onnxruntime(tampered, x)
    np.testing.assert_allclose(actual.numpy(), graph_output, atol=1e-5)
    assert np.abs(actual.numpy() - untampered.numpy()).max() > 1e-3


def test_onnx_to_torch_catches_a_tampered_conversion_of_a_foreign_graph(monkeypatch) -> None:
    from xframe_bilstm import ToleranceExceededError
    from xframe_bilstm.onnx_converters import onnx_to_torch

    _, graph = _time_major_lstm_graph()
    _with_nudged_recurrent_weight(monkeypatch)
    # read whole (time-major x, states (layers, batch, units)): compared against the module
    with pytest.raises(ToleranceExceededError, match="on onnxruntime computes something else"):
        onnx_to_torch(graph)
    onnx_to_torch(graph, verify=False)


def test_onnx_to_torch_verifies_a_hand_built_time_major_node_with_sequence_lens() -> None:
    """X goes straight into an LSTM node (layout 0) with sequence_lens and initial_h."""
    from xframe_bilstm.onnx_converters import onnx_to_torch

    rng = np.random.default_rng(3)
    helper, float_type = onnx.helper, onnx.TensorProto.FLOAT
    weights = {
        "W": rng.standard_normal((2, 16, 3)),
        "R": rng.standard_normal((2, 16, 4)) * 0.5,
        "B": rng.standard_normal((2, 32)) * 0.1,
    }
    node = helper.make_node(
        "LSTM",
        ["X", "W", "R", "B", "seq", "initial_h"],
        ["Y", "Y_h"],
        hidden_size=4,
        direction="bidirectional",
    )
    graph = helper.make_graph(
        [node],
        "hand_built",
        [
            helper.make_tensor_value_info("X", float_type, ["T", "N", 3]),
            helper.make_tensor_value_info("seq", onnx.TensorProto.INT32, ["N"]),
            helper.make_tensor_value_info("initial_h", float_type, [2, "N", 4]),
        ],
        [
            helper.make_tensor_value_info("Y", float_type, ["T", 2, "N", 4]),
            helper.make_tensor_value_info("Y_h", float_type, [2, "N", 4]),
        ],
        initializer=[
            onnx.numpy_helper.from_array(value.astype(np.float32), name)
            for name, value in weights.items()
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    module = onnx_to_torch(model)
    x = rng.standard_normal((6, 3, 3)).astype(np.float32)
    lengths = np.array([6, 2, 4], np.int32)
    h0 = rng.standard_normal((2, 3, 4)).astype(np.float32)
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString())
    expected = session.run(None, {"X": x, "seq": lengths, "initial_h": h0})
    with torch.no_grad():
        actual = module(*(torch.from_numpy(a) for a in (x, lengths, h0)))
    for e, a in zip(expected, actual):
        np.testing.assert_allclose(a.numpy(), e, atol=1e-5)


def test_a_float64_graph_is_refused_by_verify_and_converts_without_it() -> None:
    from xframe_bilstm.onnx_converters import onnx_to_torch

    torch.manual_seed(9)
    rnn = torch.nn.LSTM(3, 4, batch_first=True).double().eval()
    graph = _torch_export(
        rnn, (torch.randn(2, 5, 3, dtype=torch.float64),), ["x"], {"x": {0: "b", 1: "t"}}
    )
    with pytest.raises(UnsupportedFeatureError, match=r"float64.*verify=False"):
        onnx_to_torch(graph)
    module = onnx_to_torch(graph, verify=False)
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    with torch.no_grad():
        expected, _ = rnn(x)
        actual = module(x)[0]
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), atol=1e-5)


def test_to_onnx_feeds_the_initial_states_it_verifies(monkeypatch) -> None:
    """An export that wires two state inputs to each other's places is caught."""
    from xframe_bilstm import ToleranceExceededError
    from xframe_bilstm.adapters.onnx import any_export

    torch.manual_seed(10)
    rnn = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    to_onnx(rnn, with_initial_states=True, with_lengths=True)  # the right export verifies
    build = any_export.canonical_to_onnx

    def swapped(*args, **kwargs):
        model = build(*args, **kwargs)
        inputs = model.graph.input
        first, second = onnx.ValueInfoProto(), onnx.ValueInfoProto()
        first.CopyFrom(inputs[1])
        second.CopyFrom(inputs[3])
        inputs[1].CopyFrom(second)
        inputs[3].CopyFrom(first)
        return model

    monkeypatch.setattr(any_export, "canonical_to_onnx", swapped)
    # The check is compare(rnn, against=graph): the failing pairs name both runs.
    with pytest.raises(ToleranceExceededError, match=r"torch LSTM .*computes something else") as e:
        to_onnx(rnn, with_initial_states=True)
    assert "onnxruntime[cpu,float32]@against vs torch[cpu,float32]@original" in str(e.value)
    to_onnx(rnn, with_initial_states=True, verify=False)


def test_to_onnx_verification_needs_onnxruntime(monkeypatch) -> None:
    import sys

    from xframe_bilstm import FrameworkUnavailableError

    gru = torch.nn.GRU(3, 4, batch_first=True)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(FrameworkUnavailableError, match="onnxruntime"):
        to_onnx(gru, opset=14)
    assert [n.op_type for n in to_onnx(gru, opset=14, verify=False).graph.node].count("GRU") == 1


@pytest.mark.keras
def test_onnx_to_keras_verifies_a_time_major_torch_export() -> None:
    keras = pytest.importorskip("keras")
    from xframe_bilstm.adapters.keras import run_keras
    from xframe_bilstm.onnx_converters import onnx_to_keras

    torch.manual_seed(11)
    rnn = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True).eval()
    graph = _torch_export(rnn, (torch.randn(5, 2, 3),), ["x"], {"x": {0: "time", 1: "batch"}})
    layer = onnx_to_keras(graph)  # verify=True, the graph's input read time-major
    assert isinstance(layer, keras.Sequential)
    x = np.random.default_rng(4).standard_normal((3, 6, 3)).astype(np.float32)
    with torch.no_grad():
        expected, _ = rnn(torch.from_numpy(x.transpose(1, 0, 2)))
    (actual,) = run_keras(layer, x)
    np.testing.assert_allclose(actual, expected.numpy().transpose(1, 0, 2), atol=1e-5)


@pytest.mark.keras
def test_keras_exports_verify_with_states_and_lengths() -> None:
    keras = pytest.importorskip("keras")
    from xframe_bilstm.onnx_converters import onnx_to_keras

    keras.utils.set_random_seed(5)
    layer = keras.layers.Bidirectional(
        keras.layers.LSTM(4, return_sequences=True, return_state=True), merge_mode="ave"
    )
    layer.build((None, None, 3))
    model = to_onnx(layer, with_initial_states=True, with_lengths=True)
    back = onnx_to_keras(model)  # states and lengths fed to both sides
    assert type(back).__name__ == "Bidirectional"


class _PaddedFrontEnd(torch.nn.Module):
    """A reflect pad wider than the 7 steps verification draws, then a conv and an LSTM."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.pad = torch.nn.ReflectionPad1d(8)
        self.conv = torch.nn.Conv1d(2, 3, kernel_size=5)
        self.lstm = torch.nn.LSTM(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv(self.pad(x.transpose(1, 2))).transpose(1, 2)
        return self.lstm(features)[0]


def test_onnx_to_torch_verifies_on_the_inputs_given(tmp_path) -> None:
    module = _PaddedFrontEnd().eval()
    path = tmp_path / "padded.onnx"
    axes = {"x": {0: "batch", 1: "time"}}
    example = (torch.zeros(1, 20, 2),)
    torch.onnx.export(module, example, path, input_names=["x"], dynamic_axes=axes, dynamo=False)
    with pytest.raises(UnsupportedFeatureError, match=r"onnxruntime .* cannot run this graph"):
        onnx_to_torch(path)  # seeded steps are too few for the pad
    x = np.random.default_rng(0).normal(size=(2, 20, 2)).astype(np.float32)
    converted = onnx_to_torch(path, inputs=[x])
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(converted(torch.from_numpy(x)).numpy(), expected, atol=1e-5)
    with pytest.raises(WeightShapeError, match=r"2 arrays, where the graph takes 1 \(x\)"):
        onnx_to_torch(path, inputs=[x, x])


def test_a_keras_file_export_is_checked_against_the_model_keras_loads(tmp_path, monkeypatch):
    """A file's own computation is the model Keras loads from it, not only our reading."""
    keras = pytest.importorskip("keras")
    from xframe_bilstm import runner

    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(9, 4, mask_zero=True),
            keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True)),
            keras.layers.Dense(2),
        ]
    )
    path = tmp_path / "tagger.keras"
    model.save(path)
    reports = []

    def recorded(*args, **kwargs):
        reports.append(compare(*args, **kwargs))
        return reports[-1]

    compare = runner.compare
    monkeypatch.setattr(runner, "compare", recorded)
    to_onnx(str(path))
    labels = [run.label for run in reports[-1].runs]
    assert "keras[cpu,float32]@original" in labels, labels
    assert "onnxruntime[cpu,float32]@against" in labels, labels


def _with_nudged_recurrent_weight(monkeypatch) -> None:
    """Every module ``onnx_to_torch`` builds has its first recurrent weight nudged (not the
    one the capture reads a whole model from, which stands for the graph)."""
    from xframe_bilstm.adapters import onnx as onnx_adapter

    build = onnx_adapter.onnx_module

    def tampered(*args, **kwargs):
        module = build(*args, **kwargs)
        if kwargs.get("capturable"):
            return module
        weight = next(p for n, p in module.named_parameters() if "weight_hh" in n)
        with torch.no_grad():
            weight.view(-1)[0] += NUDGE
        return module

    monkeypatch.setattr(onnx_adapter, "onnx_module", tampered)


def test_onnx_to_torch_of_a_graph_read_as_layers_fails_as_a_compare_report(monkeypatch) -> None:
    """The graph reads as a GRU: the module is compared with onnxruntime and with the float64
    reference of that reading, its inputs and outputs matched by meaning."""
    from xframe_bilstm import ToleranceExceededError

    torch.manual_seed(4)
    rnn = torch.nn.GRU(3, 4, batch_first=True)
    graph = to_onnx(rnn, with_initial_states=True, with_lengths=True)
    onnx_to_torch(graph)  # the faithful module agrees with both
    _with_nudged_recurrent_weight(monkeypatch)
    with pytest.raises(ToleranceExceededError) as caught:
        onnx_to_torch(graph)
    message = str(caught.value)
    assert "FAILED | torch[cpu,float32]@against vs reference[cpu,float64]" in message
    assert "FAILED | torch[cpu,float32]@against vs onnxruntime[cpu,float32]@original" in message
    assert "onnxruntime[cpu,float32]@original vs reference" not in message  # the graph is right


class _Tagger(torch.nn.Module):
    """Embedding -> LSTM -> Linear: its export reads as a whole model."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(11, 3)
        self.lstm = torch.nn.LSTM(3, 4, batch_first=True)
        self.linear = torch.nn.Linear(4, 5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.linear(self.lstm(self.embedding(ids))[0])


def test_onnx_to_torch_of_a_graph_read_as_a_whole_model_fails_as_a_compare_report(
    monkeypatch,
) -> None:
    from xframe_bilstm import ToleranceExceededError

    torch.manual_seed(5)
    tagger = _Tagger().eval()
    axes = {"ids": {0: "batch", 1: "time"}}
    graph = _torch_export(tagger, (torch.zeros(2, 6, dtype=torch.int64),), ["ids"], axes)
    ids = np.random.default_rng(6).integers(1, 11, (3, 5))
    module = onnx_to_torch(graph, inputs=[ids])
    with torch.no_grad():
        expected = tagger(torch.from_numpy(ids)).numpy()
        np.testing.assert_allclose(module(torch.from_numpy(ids)).numpy(), expected, atol=1e-5)
    _with_nudged_recurrent_weight(monkeypatch)
    with pytest.raises(ToleranceExceededError) as caught:
        onnx_to_torch(graph)
    message = str(caught.value)
    assert "(4 layers): its ONNX graph on onnxruntime computes something else" in message
    assert "FAILED | torch[cpu,float32]@against vs reference[cpu,float64]" in message
    assert "onnxruntime[cpu,float32]@original vs reference" not in message
