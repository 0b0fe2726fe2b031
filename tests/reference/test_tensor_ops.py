"""The reduce (norms included), slice, scalar_op (clamps included) and matmul kinds: the
reference, the torch port, the Keras layers and the ONNX export all compute what torch's own
operations compute."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
onnxruntime = pytest.importorskip("onnxruntime")

from xframe_bilstm.adapters.keras.graph import graph_to_keras  # noqa: E402
from xframe_bilstm.adapters.onnx.graph_export import graph_to_onnx  # noqa: E402
from xframe_bilstm.graph import LayerRecord, ModelGraph  # noqa: E402
from xframe_bilstm.models.to_torch import build_torch  # noqa: E402
from xframe_bilstm.reference import run_model_reference  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

CASES = [
    ("reduce", {"op": "sum", "axes": (1,), "keepdims": False}, lambda x: x.sum(1)),
    ("reduce", {"op": "mean", "axes": (1, 2), "keepdims": True}, lambda x: x.mean((1, 2), True)),
    ("reduce", {"op": "max", "axes": (2,), "keepdims": False}, lambda x: x.amax(2)),
    ("reduce", {"op": "min", "axes": (1,), "keepdims": False}, lambda x: x.amin(1)),
    (
        "reduce",
        {"op": "l2_norm", "axes": (1, 2), "keepdims": True},
        lambda x: torch.linalg.vector_norm(x, 2, dim=(1, 2), keepdim=True),
    ),
    ("reduce", {"op": "l1_norm", "axes": (2,), "keepdims": False}, lambda x: x.norm(1, dim=2)),
    (
        "slice",
        {"axis": 1, "start": -1, "stop": None, "step": 1, "keep_axis": False},
        lambda x: x[:, -1],
    ),
    (
        "slice",
        {"axis": 2, "start": 1, "stop": 4, "step": 2, "keep_axis": True},
        lambda x: x[..., 1:4:2],
    ),
    (
        "slice",
        {"axis": 1, "start": -3, "stop": -1, "step": 1, "keep_axis": True},
        lambda x: x[:, -3:-1],
    ),
    (
        "slice",
        {"axis": 1, "start": -1, "stop": None, "step": -1, "keep_axis": True},
        lambda x: x.flip(1),
    ),
    (
        "slice",
        {"axis": 2, "start": -1, "stop": None, "step": -1, "keep_axis": True},
        lambda x: x.flip(2),
    ),
    ("scalar_op", {"op": "subtract", "constant": 1.5, "reverse": True}, lambda x: 1.5 - x),
    ("scalar_op", {"op": "divide", "constant": 4.0, "reverse": False}, lambda x: x / 4.0),
    ("scalar_op", {"op": "multiply", "constant": -2.0, "reverse": False}, lambda x: x * -2.0),
    ("scalar_op", {"op": "maximum", "constant": 0.25, "reverse": False}, lambda x: x.clamp(0.25)),
    (
        "scalar_op",
        {"op": "minimum", "constant": -0.5, "reverse": False},
        lambda x: x.clamp_max(-0.5),
    ),
    ("scalar_op", {"op": "power", "constant": 3.0, "reverse": False}, lambda x: x.pow(3)),
    *(
        ("elementwise", {"function": name}, getattr(torch, name))
        for name in ("abs", "log", "log1p", "expm1", "sign", "sin", "cos")
    ),
    ("scalar_op", {"op": "power", "constant": 2.0, "reverse": True}, lambda x: 2.0**x),
]


def _graph(kind: str, options: dict) -> ModelGraph:
    return ModelGraph(
        "m",
        (
            LayerRecord("x", "input", "InputLayer", options={"shape": (None, 5), "dtype": "f"}),
            LayerRecord("op", kind, kind, ("x",), options),
        ),
        inputs=("x",),
        outputs=("op",),
    )


@pytest.mark.parametrize(("kind", "options", "torch_op"), CASES)
def test_every_runner_computes_what_torch_computes(kind, options, torch_op) -> None:
    x = np.random.default_rng(0).standard_normal((3, 6, 5)).astype("float32")
    expected = torch_op(torch.from_numpy(x)).numpy()
    graph = _graph(kind, options)
    (reference,) = run_model_reference(graph, [x])
    np.testing.assert_allclose(reference, expected, rtol=0, atol=1e-6)
    ported = build_torch(graph)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ported, expected, rtol=0, atol=1e-6)
    rebuilt = np.asarray(graph_to_keras(graph)(x))
    np.testing.assert_allclose(rebuilt, expected, rtol=0, atol=1e-6)
    for opset in (13, 18):
        session = onnxruntime.InferenceSession(
            graph_to_onnx(graph, opset=opset).SerializeToString()
        )
        (exported,) = session.run(None, {"x": x})
        np.testing.assert_allclose(exported, expected, rtol=0, atol=1e-6)


def test_a_keras_model_holding_them_saves_and_loads(tmp_path) -> None:
    graph = _graph("reduce", {"op": "sum", "axes": (1,), "keepdims": False})
    model = graph_to_keras(graph)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = np.ones((2, 4, 5), "float32")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.full((2, 5), 4.0))


def _matmul_graph(transpose_a: bool, transpose_b: bool) -> ModelGraph:
    """x (B, T, 5) times its own (B, T, 5) square: every transpose keeps shapes valid."""
    options = {"transpose_a": transpose_a, "transpose_b": transpose_b}
    return ModelGraph(
        "m",
        (
            LayerRecord("x", "input", "InputLayer", options={"shape": (None, 5), "dtype": "f"}),
            LayerRecord(
                "y",
                "scalar_op",
                "mul",
                ("x",),
                {"op": "multiply", "constant": 2.0, "reverse": False},
            ),
            LayerRecord(
                "square",
                "matmul",
                "matmul",
                ("x", "y"),
                {"transpose_a": False, "transpose_b": True},
            ),
            LayerRecord("op", "matmul", "matmul", ("square", "x"), options),
        ),
        inputs=("x",),
        outputs=("op",),
    )


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_every_runner_multiplies_as_torch_matmul(transpose_a: bool, transpose_b: bool) -> None:
    x = np.random.default_rng(1).standard_normal((3, 5, 5)).astype("float32")
    t = torch.from_numpy(x)
    square = t @ (2.0 * t).transpose(1, 2)
    expected = torch.matmul(
        square.transpose(1, 2) if transpose_a else square, t.transpose(1, 2) if transpose_b else t
    ).numpy()
    graph = _matmul_graph(transpose_a, transpose_b)
    (reference,) = run_model_reference(graph, [x])
    np.testing.assert_allclose(reference, expected, rtol=1e-5, atol=1e-5)
    ported = build_torch(graph)(t).detach().numpy()
    np.testing.assert_allclose(ported, expected, rtol=1e-5, atol=1e-5)
    model = graph_to_keras(graph)
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-5, atol=1e-5)
    session = onnxruntime.InferenceSession(graph_to_onnx(graph, opset=13).SerializeToString())
    (exported,) = session.run(None, {"x": x})
    np.testing.assert_allclose(exported, expected, rtol=1e-5, atol=1e-5)


def test_a_keras_model_holding_a_matmul_saves_and_loads(tmp_path) -> None:
    model = graph_to_keras(_matmul_graph(False, False))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(2).standard_normal((2, 4, 5)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("op", "reverse", "shape", "torch_op"),
    [
        ("multiply", False, (5,), lambda x, w: x * w),
        ("subtract", True, (1, 1, 5), lambda x, w: w - x),
        ("divide", False, (6, 1), lambda x, w: x / w),
        ("add", False, (1, 6, 5), lambda x, w: x + w),
    ],
)
def test_every_runner_applies_a_held_tensor_as_torch_broadcasts(op, reverse, shape, torch_op):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 6, 5)).astype("float32")
    value = (rng.uniform(0.5, 2.0, shape)).astype("float32")
    expected = torch_op(torch.from_numpy(x), torch.from_numpy(value)).numpy()
    options = {"op": op, "reverse": reverse, "shape": shape}
    graph = ModelGraph(
        "m",
        (
            LayerRecord("x", "input", "InputLayer", options={"shape": (None, 5), "dtype": "f"}),
            LayerRecord("op", "weight_op", op, ("x",), options, {"value": value}),
        ),
        inputs=("x",),
        outputs=("op",),
    )
    (reference,) = run_model_reference(graph, [x])
    np.testing.assert_allclose(reference, expected, rtol=1e-6, atol=1e-6)
    ported = build_torch(graph)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ported, expected, rtol=1e-6, atol=1e-6)
    rebuilt = np.asarray(graph_to_keras(graph)(x))
    np.testing.assert_allclose(rebuilt, expected, rtol=1e-6, atol=1e-6)
    session = onnxruntime.InferenceSession(graph_to_onnx(graph, opset=13).SerializeToString())
    (exported,) = session.run(None, {"x": x})
    np.testing.assert_allclose(exported, expected, rtol=1e-6, atol=1e-6)
