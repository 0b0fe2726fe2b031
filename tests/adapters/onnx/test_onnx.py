"""The ONNX interpreter module against onnxruntime on hand-built graphs, attribute by attribute,
and reading graphs that the TorchScript exporter emits."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from xframe_bilstm import UnsupportedFeatureError, run_reference  # noqa: E402
from xframe_bilstm.adapters.onnx import (  # noqa: E402
    graph_to_canonical,
    onnx_module,
    run_onnxruntime,
)

pytestmark = pytest.mark.onnx

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
SLOTS = {"LSTM": 3, "GRU": 2, "RNN": 1}
B, T, D, H = 3, 5, 2, 3


def _graph(
    op: str,
    *,
    direction: str = "forward",
    layout: int = 0,
    bias: bool = True,
    lengths: bool = False,
    states: bool = False,
    peepholes: bool = False,
    seed: int = 0,
    scale: float = 0.6,
    **attributes,
):
    """One recurrent node between graph inputs and outputs Y, Y_h (and Y_c), float32."""
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    gates = GATES[op]

    def weight(name, shape):
        array = (rng.standard_normal(shape) * scale).astype(np.float32)
        return numpy_helper.from_array(array, name)

    initializers = [weight("W", (dirs, gates * H, D)), weight("R", (dirs, gates * H, H))]
    time_batch = ["batch", "time"] if layout else ["time", "batch"]
    state_shape = ["batch", dirs, H] if layout else [dirs, "batch", H]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [*time_batch, D])]
    names = ["X", "W", "R", "", "", "", "", ""]
    if bias:
        initializers.append(weight("B", (dirs, 2 * gates * H)))
        names[3] = "B"
    if lengths:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["batch"]))
        names[4] = "sequence_lens"
    if states:
        for index, kind in ((5, "initial_h"), (6, "initial_c"))[: 2 if op == "LSTM" else 1]:
            inputs.append(helper.make_tensor_value_info(kind, TensorProto.FLOAT, state_shape))
            names[index] = kind
    if peepholes:
        initializers.append(weight("P", (dirs, 3 * H)))
        names[7] = "P"
    while names[-1] == "":
        names.pop()
    outputs_names = ["Y", "Y_h", "Y_c"][: 3 if op == "LSTM" else 2]
    node = helper.make_node(
        op,
        names,
        outputs_names,
        hidden_size=H,
        direction=direction,
        **attributes,
        **({"layout": layout} if layout else {}),
    )
    y_shape = ["batch", "time", dirs, H] if layout else ["time", dirs, "batch", H]
    outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, y_shape)] + [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, state_shape) for n in outputs_names[1:]
    ]
    graph = helper.make_graph([node], op, inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _feeds(model, seed: int = 1):
    rng = np.random.default_rng(seed)
    feeds = {}
    for graph_input in model.graph.input:
        dims = [
            d.dim_value or {"batch": B, "time": T}[d.dim_param]
            for d in graph_input.type.tensor_type.shape.dim
        ]
        if graph_input.type.tensor_type.elem_type == TensorProto.INT32:
            feeds[graph_input.name] = np.array([5, 2, 1], np.int32)
        else:
            feeds[graph_input.name] = rng.standard_normal(dims).astype(np.float32)
    return feeds


def _run_both(model):
    import onnxruntime as ort

    feeds = _feeds(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)
    module = onnx_module(model)
    with torch.no_grad():
        actual = module(*(torch.from_numpy(v) for v in feeds.values()))
    return expected, [a.numpy() for a in actual], module


def _assert_matches_onnxruntime(model, atol=2e-6, rtol=2e-6):
    expected, actual, module = _run_both(model)
    for name, e, a in zip(["Y", "Y_h", "Y_c"], expected, actual):
        np.testing.assert_allclose(a, e, atol=atol, rtol=rtol, err_msg=name)
    return module


DIRECTIONS = ["forward", "reverse", "bidirectional"]
INPUTS = [
    pytest.param(dict(), id="plain"),
    pytest.param(dict(bias=False), id="no-B"),
    pytest.param(dict(lengths=True), id="sequence_lens"),
    pytest.param(dict(states=True, lengths=True), id="initial-states+sequence_lens"),
]


@pytest.mark.parametrize("op", list(GATES))
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("inputs", INPUTS)
def test_default_attributes_run_natively_and_match(op, direction, inputs) -> None:
    # GRU's default linear_before_reset=0 is not nn.GRU's equation: it runs on the loop.
    extra = {"linear_before_reset": 1} if op == "GRU" else {}
    module = _assert_matches_onnxruntime(_graph(op, direction=direction, **inputs, **extra))
    assert module.recurrent[0].native is not None


ACTIVATIONS = [
    ("Relu", [], []),
    ("HardSigmoid", [1 / 6], [0.5]),
    ("HardSigmoid", [], []),  # ONNX defaults 0.2, 0.5: Keras 2's hard_sigmoid
    ("Affine", [0.7], [0.1]),
    ("Elu", [0.5], []),
    ("LeakyRelu", [0.2], []),
    ("ThresholdedRelu", [0.1], []),
    ("ScaledTanh", [0.9], [1.1]),
    ("Softsign", [], []),
    ("Softplus", [], []),
]


@pytest.mark.parametrize("op", list(GATES))
@pytest.mark.parametrize(
    ("activation", "alpha", "beta"), ACTIVATIONS, ids=[f"{a[0]}{a[1]}" for a in ACTIVATIONS]
)
def test_activations_with_alpha_and_beta_run_on_the_loop(op, activation, alpha, beta) -> None:
    # The activation goes into every slot of both directions, so the alpha/beta lists repeat.
    slots = SLOTS[op] * 2
    attributes = {"activations": [activation] * slots}
    if alpha:
        attributes["activation_alpha"] = alpha * slots
    if beta:
        attributes["activation_beta"] = beta * slots
    # Small weights keep unbounded gates (Affine, LeakyRelu in z) from blowing up over 5 steps.
    model = _graph(op, direction="bidirectional", lengths=True, scale=0.3, **attributes)
    module = _assert_matches_onnxruntime(model, rtol=1e-5)
    assert module.recurrent[0].native is None or (activation == "Relu" and op == "RNN")


def test_mixed_activations_consume_alpha_in_order() -> None:
    # onnxruntime hands alphas to the activations that read one, in order: here HardSigmoid
    # takes 1/6, Elu 0.5, Affine 2.0; betas go to HardSigmoid and Affine only.
    model = _graph(
        "LSTM",
        activations=["HardSigmoid", "Elu", "Affine"],
        activation_alpha=[1 / 6, 0.5, 2.0],
        activation_beta=[0.5, -0.1],
    )
    _assert_matches_onnxruntime(model)


@pytest.mark.parametrize(
    ("op", "attributes"),
    [
        pytest.param("LSTM", dict(clip=0.5), id="LSTM-clip"),
        pytest.param("GRU", dict(clip=0.5), id="GRU-clip"),
        pytest.param("RNN", dict(clip=0.5), id="RNN-clip"),
        pytest.param("LSTM", dict(input_forget=1), id="LSTM-input_forget"),
        pytest.param("LSTM", dict(peepholes=True), id="LSTM-peepholes"),
        pytest.param("GRU", dict(linear_before_reset=0), id="GRU-linear_before_reset=0"),
        pytest.param("GRU", dict(linear_before_reset=1), id="GRU-linear_before_reset=1"),
    ],
)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_other_attributes_match(op, attributes, direction) -> None:
    model = _graph(op, direction=direction, lengths=True, states=True, **attributes)
    _assert_matches_onnxruntime(model)


@pytest.mark.parametrize(("op", "direction"), list(itertools.product(GATES, DIRECTIONS)))
def test_layout_1_equals_layout_0_transposed(op, direction) -> None:
    # onnxruntime's CPU kernels reject layout=1, so compare with the layout=0 graph instead.
    batch_major = _graph(op, direction=direction, layout=1, lengths=True, states=True)
    time_major = _graph(op, direction=direction, lengths=True, states=True)
    feeds = _feeds(time_major)
    with torch.no_grad():
        expected = onnx_module(time_major)(*(torch.from_numpy(v) for v in feeds.values()))
        actual = onnx_module(batch_major)(
            torch.from_numpy(feeds["X"].transpose(1, 0, 2).copy()),
            torch.from_numpy(feeds["sequence_lens"]),
            *(
                torch.from_numpy(v.transpose(1, 0, 2).copy())
                for k, v in feeds.items()
                if k.startswith("initial")
            ),
        )
    torch.testing.assert_close(actual[0], expected[0].permute(2, 0, 1, 3), rtol=0, atol=1e-6)
    for a, e in zip(actual[1:], expected[1:]):
        torch.testing.assert_close(a, e.transpose(0, 1), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("op", "attributes", "named"),
    [
        ("LSTM", dict(clip=3.0), "clip=3"),
        ("LSTM", dict(input_forget=1), "input_forget=1"),
        ("LSTM", dict(peepholes=True), "peephole"),
        ("GRU", dict(activations=["Sigmoid", "LeakyRelu"], activation_alpha=[0.1]), "LeakyRelu"),
        ("LSTM", dict(activations=["Sigmoid", "Tanh", "Relu"]), "g=tanh and h=relu"),
    ],
    ids=["clip", "input_forget", "peepholes", "activation", "lstm-g-h"],
)
def test_canonical_refuses_what_keras_lacks(op, attributes, named) -> None:
    model = _graph(op, **attributes)
    with pytest.raises(UnsupportedFeatureError, match=named) as error:
        graph_to_canonical(model)
    assert f"{op} node" in str(error.value)


def test_gru_recurrent_h_bias_is_refused_without_linear_before_reset() -> None:
    with pytest.raises(UnsupportedFeatureError, match="Rbh"):
        graph_to_canonical(_graph("GRU", linear_before_reset=0))


def test_reverse_direction_aligned_with_input_time_has_no_keras_meaning() -> None:
    # A lone ONNX reverse node's Y is aligned with input time; Keras's go_backwards is not.
    model = _graph("GRU", direction="reverse", linear_before_reset=1)
    model.graph.output.pop()  # keep Y only
    with pytest.raises(UnsupportedFeatureError, match="match none of the"):
        graph_to_canonical(model)


def test_a_bare_node_says_what_was_tried_and_why_nothing_matched() -> None:
    # Y (time, directions, batch, hidden) straight out of the node: no candidate has its shape.
    with pytest.raises(UnsupportedFeatureError) as error:
        graph_to_canonical(_graph("LSTM"))
    message = str(error.value)
    assert "closest: ," not in message and "inf" not in message
    assert "none of the 4 Keras layers or stacks" in message
    assert "LSTM node 'Y' (lstm, forward)" in message
    assert f"(5, 1, 3, {H})" in message  # Y of the (3, 5, D) probe read time-major
    assert "raw Y" in message and "onnx_to_torch" in message


def _recurrent_branch(name: str, op: str = "GRU"):
    """A subgraph holding one recurrent node of ``_graph(op)`` on the outer X, W and R."""
    inner = _graph(op, bias=False).graph
    (node,) = inner.node
    node.name = name
    return helper.make_graph([node], name, [], [inner.output[1]])


def _control_flow_model(kind: str):
    """An If (as in Silero VAD) or a Loop whose subgraphs hold the recurrent nodes."""
    outer = _graph("GRU", bias=False)
    if kind == "If":
        held = helper.make_node(
            "If",
            ["flag"],
            ["Y_h"],
            name="vad_branch",
            then_branch=_recurrent_branch("gru_then"),
            else_branch=_recurrent_branch("gru_else"),
        )
        flag = helper.make_tensor_value_info("flag", TensorProto.BOOL, [])
    else:
        body = _recurrent_branch("gru_body")
        body.input.extend(
            [
                helper.make_tensor_value_info("i", TensorProto.INT64, []),
                helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            ]
        )
        held = helper.make_node("Loop", ["", "flag"], ["Y_h"], name="frames", body=body)
        flag = helper.make_tensor_value_info("flag", TensorProto.BOOL, [])
    del outer.graph.node[:]
    outer.graph.node.append(held)
    outer.graph.input.append(flag)
    del outer.graph.output[:]
    outer.graph.output.append(helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, None))
    return outer


@pytest.mark.parametrize(
    ("kind", "named"),
    [
        ("If", ["If node 'vad_branch' (", "then_branch: GRU node 'gru_then'", "else_branch: GRU"]),
        ("Loop", ["Loop node 'frames' (body: GRU node 'gru_body')"]),
    ],
)
def test_recurrent_nodes_inside_control_flow_are_named(kind: str, named: list[str]) -> None:
    model = _control_flow_model(kind)
    with pytest.raises(UnsupportedFeatureError) as read:
        graph_to_canonical(model)
    assert all(part in str(read.value) for part in named), read.value
    assert "control flow (if, loop, scan) is not converted" in str(read.value).lower()
    if kind == "If":  # the interpreter runs If branches (tests/adapters/onnx/test_branches.py)
        onnx_module(model)
        return
    with pytest.raises(UnsupportedFeatureError) as run:
        onnx_module(model)
    assert all(part in str(run.value) for part in named), run.value
    assert "Recurrent nodes inside loops, which are not run" in str(run.value)


def test_a_graph_without_recurrent_nodes_lists_its_operators() -> None:
    model = _graph("RNN")
    model.graph.node[0].op_type = "Relu"
    with pytest.raises(
        UnsupportedFeatureError, match=r"no LSTM, GRU or RNN node \(its operators: Relu\)"
    ):
        graph_to_canonical(model)


def test_unknown_operator_is_named_with_its_node() -> None:
    model = _graph("RNN")
    model.graph.node.append(helper.make_node("Hardmax", ["Y"], ["hard"], name="mystery"))
    with pytest.raises(UnsupportedFeatureError, match=r"Hardmax \(1 node: 'mystery'\)"):
        onnx_module(model)


def test_weights_computed_at_run_time_run_and_match() -> None:
    model = _graph("RNN")
    model.graph.node.insert(0, helper.make_node("Neg", ["W"], ["minus_w"]))
    model.graph.node[1].input[1] = "minus_w"
    module = _assert_matches_onnxruntime(model)
    assert module.recurrent[0].native is None  # the exact loop, on the weights computed
    with pytest.raises(UnsupportedFeatureError, match=r"weight inputs W \('minus_w'\)"):
        graph_to_canonical(model)


def _torch_export(module, *example, **options):
    import io

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, buffer, dynamo=False, **options)
    return onnx.load_from_string(buffer.getvalue())


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda: torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True),
            id="lstm-bi-L2-batch_first",
        ),
        pytest.param(lambda: torch.nn.GRU(3, 4, batch_first=True), id="gru-batch_first"),
        pytest.param(lambda: torch.nn.GRU(3, 4, num_layers=2), id="gru-L2-time_major"),
    ],
)
def test_torchscript_export_imports_exactly(make) -> None:
    torch.manual_seed(0)
    rnn = make().eval()
    x = torch.randn(2, 5, 3) if rnn.batch_first else torch.randn(5, 2, 3)
    model = _torch_export(rnn, x, input_names=["input"], dynamic_axes={"input": {0: "a", 1: "b"}})
    with torch.no_grad():
        expected = rnn(x)
        actual = onnx_to_torch_module(model)(x)
    torch.testing.assert_close(actual[0], expected[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(
        actual[1], expected[1] if rnn.mode == "GRU" else expected[1][0], rtol=0, atol=1e-6
    )
    # The canonical stack computes the module's output (batch-first, as Keras).
    stack = graph_to_canonical(model)
    batch_first = x.numpy() if rnn.batch_first else x.numpy().transpose(1, 0, 2)
    (reference,) = run_reference(stack, batch_first)
    output = expected[0].numpy()
    np.testing.assert_allclose(
        reference, output if rnn.batch_first else output.transpose(1, 0, 2), atol=1e-5
    )


def onnx_to_torch_module(model):
    return onnx_module(model)


def test_exported_graph_runs_the_same_on_interpreter_and_onnxruntime() -> None:
    from xframe_bilstm.factories import random_stack
    from xframe_bilstm.onnx_converters import to_onnx

    rng = np.random.default_rng(0)
    stack = random_stack(
        rng,
        "lstm",
        3,
        4,
        num_layers=2,
        direction="bidirectional",
        merge_mode="ave",
        return_state=True,
    )
    model = to_onnx(stack, with_lengths=True)
    x = rng.standard_normal((3, 5, 3)).astype(np.float32)
    expected = run_onnxruntime(model, x, lengths=[5, 2, 1])
    with torch.no_grad():
        actual = onnx_module(model)(torch.from_numpy(x), torch.tensor([5, 2, 1], dtype=torch.int32))
    for e, a in zip(expected, actual):
        np.testing.assert_allclose(a.numpy(), e, atol=2e-6)
