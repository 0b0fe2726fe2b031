"""Layers called on several inputs (siamese models), read from Keras and torch and ported
with their weights held once.

Expected values are the original's own run: the Keras model's call, the torch module's
``forward``, torch's autograd for gradients, onnxruntime on the export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm import compare, keras_to_torch, torch_to_keras  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.graph import LayerRecord, ModelGraph  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402
from xframe_bilstm.models.live import graph_from_keras  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402
from xframe_bilstm.onnx_converters import to_onnx  # noqa: E402
from xframe_bilstm.reference.graph_backward import graph_gradients  # noqa: E402

from .saved_models import randomize, token_batch  # noqa: E402
from .siamese_models import TORCH_MODELS, ManhattanLSTM  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch, pytest.mark.onnx]


def keras_siamese() -> Any:
    """One Embedding and one LSTM read both questions; a Dense reads both encodings and
    their difference (the question-pair classifiers' shape)."""
    layers = keras.layers
    left = keras.Input((None,), dtype="int32", name="left")
    right = keras.Input((None,), dtype="int32", name="right")
    embedding = layers.Embedding(30, 8, mask_zero=True, name="embedding")
    encoder = layers.Bidirectional(layers.LSTM(6), name="encoder")
    a, b = encoder(embedding(left)), encoder(embedding(right))
    joined = layers.Concatenate(name="joined")([a, b, layers.Subtract(name="difference")([a, b])])
    model = keras.Model([left, right], layers.Dense(1, activation="sigmoid", name="same")(joined))
    randomize(model, 4)
    return model


def _pair(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [token_batch(rng), token_batch(rng)[::-1].copy()]


def _close(actual: Any, expected: Any, tolerance: float) -> None:
    assert np.abs(np.asarray(actual) - np.asarray(expected)).max() <= tolerance


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    model = keras_siamese()
    path = tmp_path_factory.mktemp("siamese") / "siamese.keras"
    model.save(path)
    return model, path


def test_a_keras_layer_called_twice_is_one_layer_shared_by_two_records(saved) -> None:
    model, path = saved
    for graph in (graph_from_keras(model), read_model(path)):
        again = graph.layer("encoder@1")
        assert again.shares == "encoder" and again.inputs == ("embedding@1",)
        first = graph.layer("encoder").recurrent
        assert again.recurrent is first  # the same arrays, not a copy
        assert graph.layer("joined").inputs == ("encoder", "encoder@1", "difference")


def test_the_torch_port_holds_the_shared_layers_once_and_returns_what_keras_does(saved) -> None:
    model, path = saved
    inputs = _pair(1)
    port = keras_to_torch(path)
    names = list(port.state_dict())
    assert sum(name.startswith("encoder.") for name in names) == 8  # two directions, once
    assert not any("@" in name or name.startswith("embedding_") for name in names)
    with torch.no_grad():
        actual = port(*map(torch.from_numpy, inputs)).numpy()
    _close(actual, model(inputs), derived_tolerance(read_model(path), inputs))


def test_torch_to_keras_of_the_port_calls_one_keras_layer_twice(saved) -> None:
    model, path = saved
    inputs = _pair(2)
    back = torch_to_keras(keras_to_torch(path))
    encoders = [layer for layer in back.layers if "encoder" in layer.name]
    assert len(encoders) == 1 and len(encoders[0]._inbound_nodes) == 2
    _close(back(inputs), model(inputs), 2 * derived_tolerance(read_model(path), inputs))


def test_the_onnx_export_holds_one_copy_of_the_shared_weights(saved) -> None:
    model, path = saved
    inputs = _pair(3)
    exported = to_onnx(str(path))
    initializers = [i.name for i in exported.graph.initializer]
    assert sum(name.startswith("encoder") for name in initializers) == 3  # W, R, B
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"left": inputs[0].astype("int64"), "right": inputs[1].astype("int64")}
    (actual,) = session.run(None, feeds)
    _close(actual, model(inputs), derived_tolerance(read_model(path), inputs))


def test_compare_of_the_keras_model_with_gradients_sums_the_shared_layers(saved) -> None:
    model, _ = saved
    report = compare(model, inputs=_pair(4), frameworks=["torch", "keras"], gradients=True)
    assert report, report
    gradients = [line for line in str(report).splitlines() if "gradients of" in line]
    assert gradients and all(line.startswith("PASSED") for line in gradients)
    assert "encoder@1" not in str(report)


def test_a_torch_module_called_twice_is_captured_without_its_inputs_shapes() -> None:
    torch.manual_seed(0)
    module = ManhattanLSTM().eval()
    graph = graph_from_torch(module)
    assert [r.shares for r in graph.layers if r.shares] == ["embedding", "lstm"]
    port = torch_to_keras(module)
    assert [layer.name for layer in port.layers].count("lstm") == 1


def _packed_pair() -> list[np.ndarray]:
    """Premise and hypothesis right-padded, each by lengths of its own."""
    rng = np.random.default_rng(8)
    arrays = []
    for lengths in ([6, 2, 5, 3], [3, 6, 1, 4]):
        ids = rng.integers(1, 30, (4, 6))
        ids[np.arange(6)[None, :] >= np.array(lengths)[:, None]] = 0
        arrays += [ids, np.array(lengths)]
    return arrays


@pytest.mark.parametrize("name", sorted(TORCH_MODELS))
def test_siamese_modules_port_to_keras_as_they_compute(name: str) -> None:
    torch.manual_seed(1)
    module = TORCH_MODELS[name]().eval()
    inputs = _packed_pair() if name == "PackedPair" else _pair(5)
    port = torch_to_keras(module)
    with torch.no_grad():
        expected = module(*(torch.from_numpy(x).long() for x in inputs)).numpy()
    _close(port(inputs), expected, derived_tolerance(graph_from_torch(module), inputs))


def test_a_pair_packed_by_its_own_lengths_compares_on_each_sequences_lengths() -> None:
    torch.manual_seed(3)
    module = TORCH_MODELS["PackedPair"]().eval()
    graph = graph_from_torch(module)
    masks = [r.inputs[1] for r in graph.layers if r.kind == "lengths_mask"]
    assert masks == ["premise_lengths", "hypothesis_lengths"]
    report = compare(module, inputs=_packed_pair(), frameworks=["torch", "keras", "onnxruntime"])
    assert report, report
    assert "@original" in str(report)


class TorchPairClassifier(ManhattanLSTM):
    """The shared LSTM's final states joined and classified: kinds that have gradients."""

    def __init__(self) -> None:
        super().__init__(embedding=8, hidden=10)
        self.head = torch.nn.Linear(20, 2)

    def forward(self, first: Any, second: Any) -> Any:
        _, (h_first, _) = self.lstm(self.embedding(first))
        _, (h_second, _) = self.lstm(self.embedding(second))
        return self.head(torch.cat([h_first[-1], h_second[-1]], dim=1))


def test_compare_of_a_torch_siamese_checks_its_gradients_against_autograd() -> None:
    torch.manual_seed(1)
    report = compare(TorchPairClassifier().eval(), frameworks=["torch", "keras"], gradients=True)
    assert report, report
    assert "@original" in str(report)


def test_the_reference_gradient_of_a_shared_layer_is_the_sum_over_its_calls() -> None:
    rng = np.random.default_rng(6)
    kernel = rng.standard_normal((3, 2))
    options = {"activation": "tanh", "time_distributed": False}
    add = {"op": "add", "mask_combine": "any"}
    inputs = [rng.standard_normal((4, 3)) for _ in range(2)]
    graph = ModelGraph(
        "twice",
        (
            LayerRecord("a", "input", "InputLayer", options={"shape": (3,), "dtype": "float64"}),
            LayerRecord("b", "input", "InputLayer", options={"shape": (3,), "dtype": "float64"}),
            LayerRecord("fc", "dense", "Dense", ("a",), options, {"kernel": kernel}),
            LayerRecord("fc@1", "dense", "Dense", ("b",), options, {"kernel": kernel}, shares="fc"),
            LayerRecord("sum", "merge", "Add", ("fc", "fc@1"), add),
        ),
        inputs=("a", "b"),
        outputs=("sum",),
    )
    cotangent = rng.standard_normal((4, 2))
    grads = graph_gradients(graph, inputs, [cotangent])
    assert list(grads.weights) == ["fc/kernel"]
    weight = torch.tensor(kernel, requires_grad=True)
    a, b = (torch.from_numpy(x) for x in inputs)
    (torch.tanh(a @ weight) + torch.tanh(b @ weight)).backward(torch.from_numpy(cotangent))
    np.testing.assert_allclose(grads.weights["fc/kernel"], weight.grad.numpy(), rtol=1e-12)


def _dense(name: str, inputs: tuple[str, ...], kernel: np.ndarray, **changes: Any) -> LayerRecord:
    options = {"activation": "linear", "time_distributed": False}
    return LayerRecord(name, "dense", "Dense", inputs, options, {"kernel": kernel}, **changes)


@pytest.mark.parametrize(
    ("later", "message"),
    [
        (_dense("fc@1", ("x",), np.ones((3, 2)), shares="nowhere"), "not an earlier layer"),
        (_dense("fc@1", ("x",), np.ones((3, 4)), shares="fc"), "differs from it"),
        (_dense("fc@2", ("x",), np.ones((3, 2)), shares="fc@1"), "name that one"),
    ],
    ids=["unknown", "other-shape", "chained"],
)
def test_a_record_sharing_what_it_cannot_is_refused_by_name(later, message) -> None:
    x = LayerRecord("x", "input", "InputLayer", options={"shape": (3,), "dtype": "float32"})
    layers = [x, _dense("fc", ("x",), np.ones((3, 2)))]
    if later.shares == "fc@1":
        layers.append(_dense("fc@1", ("x",), np.ones((3, 2)), shares="fc"))
    with pytest.raises(UnsupportedFeatureError, match=message):
        ModelGraph("m", (*layers, later), inputs=("x",), outputs=(later.name,))


@pytest.mark.parametrize(
    ("name", "shared"),
    [
        ("ManhattanLSTM", {"embedding", "recurrent"}),
        ("ESIM", {"embedding", "recurrent", "dense"}),  # its Linear: MatMul, Add on each call
    ],
)
def test_an_onnx_export_of_a_siamese_module_reads_its_encoder_as_one_layer(
    tmp_path, name: str, shared: set[str]
) -> None:
    onnx = pytest.importorskip("onnx")
    from xframe_bilstm.models.from_onnx import graph_from_onnx

    torch.manual_seed(2)
    module = TORCH_MODELS[name]().eval()
    ids = torch.randint(1, 30, (3, 7))
    axes = {name: {0: "batch", 1: "time"} for name in ("first", "second")}
    path = tmp_path / "siamese.onnx"
    torch.onnx.export(
        module, (ids, ids.flip(0)), str(path), dynamo=False, input_names=list(axes),
        dynamic_axes=axes,
    )  # fmt: skip
    proto = onnx.load(path)
    lstms = [node for node in proto.graph.node if node.op_type == "LSTM"]
    assert len({node.input[1] for node in lstms}) == len(lstms)  # each call its own copy
    graph = graph_from_onnx(proto)
    assert {r.kind for r in graph.layers if r.shares} == shared
    report = compare(path, frameworks=["torch", "keras", "onnxruntime"])
    assert report, report


def test_the_saved_keras_port_of_a_torch_siamese_reads_back_with_its_layer_shared(
    tmp_path: Path,
) -> None:
    torch.manual_seed(4)
    module = TorchPairClassifier().eval()
    path = tmp_path / "port.keras"
    torch_to_keras(module).save(path)
    graph = read_model(path)
    assert [r.name for r in graph.layers if r.shares] == ["embedding@1", "lstm@1"]
    back = keras_to_torch(path)  # checked against the saved port as Keras loads it
    assert sum(name.startswith("lstm.") for name in back.state_dict()) == 4
    inputs = _pair(9)
    with torch.no_grad():
        expected = module(*(torch.from_numpy(x).long() for x in inputs)).numpy()
        actual = back(*map(torch.from_numpy, inputs)).numpy()
    _close(actual, expected, 2 * derived_tolerance(graph, inputs))


def _linear(name: str, source: str, kernel: np.ndarray, **changes: Any) -> LayerRecord:
    options = {"activation": "linear", "time_distributed": False}
    return LayerRecord(name, "dense", "matmul", (source,), options, {"kernel": kernel}, **changes)


def _bias(name: str, source: str, value: np.ndarray, **changes: Any) -> LayerRecord:
    options = {"op": "add", "reverse": True, "shape": value.shape}
    return LayerRecord(name, "weight_op", "add", (source,), options, {"value": value}, **changes)


@pytest.mark.parametrize("bias_shared", [True, False])
def test_a_shared_dense_and_its_bias_fold_into_one_shared_dense(bias_shared: bool) -> None:
    from xframe_bilstm.models.capture_bias import dense_biases

    kernel, bias = np.ones((2, 3)), np.arange(3.0)
    later = {"value": bias, "shares": "add"} if bias_shared else {"value": bias + 1}
    records = [
        _linear("matmul", "a", kernel),
        _bias("add", "matmul", bias),
        _linear("matmul_1", "b", kernel, shares="matmul"),
        _bias("add_1", "matmul_1", **later),
    ]
    folded = {r.name: r for r in dense_biases(records, ["add", "add_1"])}
    assert set(folded) == {"add", "add_1"} and folded["add_1"].kind == "dense"
    # the later call shares the folded layer only where its bias is that layer's too
    assert folded["add_1"].shares == ("add" if bias_shared else "")
