"""Keras models with Conv1D, Conv2D, ZeroPadding1D and Cropping1D, ported every way.

Each model is a real Keras model saved as ``.keras`` and ``.h5``; expected values are the
model's own call. Channel and length sizes avoid a Keras 3 bug on TensorFlow: a
channels-first convolution whose last axis is as long as it has filters gets its bias
added along that axis in eager calls (``keras.ops.add`` picks ``bias_add``'s layout by
shape).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm import compare, keras_to_torch  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402
from xframe_bilstm.models.live import graph_from_keras  # noqa: E402
from xframe_bilstm.onnx_converters import to_onnx  # noqa: E402
from xframe_bilstm.reference import run_model_reference  # noqa: E402

from .. import saved_models  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch, pytest.mark.onnx]
layers = keras.layers


def _crnn() -> Any:
    """Input (T, F) -> Conv1D(same) -> Conv1D(valid, stride 2) -> Conv1D(dilated) -> BiLSTM."""
    x = keras.Input((None, 5), name="features")
    h = layers.Conv1D(6, 3, padding="same", activation="relu", name="conv_same")(x)
    h = layers.Conv1D(8, 3, strides=2, name="conv_stride")(h)
    # 7 steps (the converters' check) -> 7 -> 3 -> 1
    h = layers.Conv1D(8, 2, dilation_rate=2, groups=2, activation="tanh", name="conv_dilated")(h)
    h = layers.Bidirectional(layers.LSTM(4), name="bilstm")(h)
    return keras.Model(x, layers.Dense(3, name="logits")(h), name="crnn")


def _image_rows() -> Any:
    """(H, W, C) -> Conv2D(same, stride 2: TensorFlow's odd zero at the end) -> rows -> LSTM."""
    x = keras.Input((9, 8, 3), name="image")
    h = layers.Conv2D(5, 3, strides=2, padding="same", name="conv")(x)  # (5, 4, 5)
    h = layers.Reshape((5, 20), name="rows")(h)
    return keras.Model(x, layers.LSTM(4, name="lstm")(h), name="image_rows")


def _options() -> Any:
    """Causal, strided same, no bias, channels_first, padding and cropping."""
    x = keras.Input((13, 4), name="x")
    h = layers.Conv1D(6, 2, padding="causal", dilation_rate=3, name="causal")(x)
    h = layers.ZeroPadding1D((1, 3), name="pad")(h)
    h = layers.Cropping1D((2, 1), name="crop")(h)  # 14 steps
    h = layers.Conv1D(7, 4, strides=3, padding="same", use_bias=False, name="same3")(h)
    h = layers.Conv1D(3, 2, data_format="channels_first", activation="sigmoid", name="cf")(h)
    return keras.Model(x, h, name="options")  # (5, 3): channels-first, 5 != 3 filters


def _padded_image() -> Any:
    """(H, W, C) -> ZeroPadding2D (uneven) -> Conv2D -> Cropping2D -> rows -> LSTM; and the
    same padding and cropping channels-first, read back into rows."""
    x = keras.Input((7, 6, 2), name="image")
    h = layers.ZeroPadding2D(((1, 2), (0, 1)), name="pad")(x)  # (10, 7)
    h = layers.Conv2D(3, 3, name="conv")(h)  # (8, 5)
    h = layers.Cropping2D(((1, 0), (1, 1)), name="crop")(h)  # (7, 3)
    first = layers.Permute((3, 1, 2), name="channels_first")(h)  # (3, 7, 3)
    first = layers.ZeroPadding2D((1, 0), data_format="channels_first", name="pad_cf")(first)
    first = layers.Cropping2D(((0, 2), 0), data_format="channels_first", name="crop_cf")(first)
    rows = layers.Reshape((7, 9), name="rows")(layers.Permute((2, 3, 1), name="back")(first))
    return keras.Model(x, layers.LSTM(4, name="lstm")(rows), name="padded_image")


def _separable() -> Any:
    """A keyword spotter's depthwise-separable front end: SeparableConv1D (two filters per
    channel), DepthwiseConv1D (strided), then DepthwiseConv2D and SeparableConv2D on an
    image read as rows, each as a grouped convolution (and a pointwise one)."""
    x = keras.Input((None, 4), name="frames")
    h = layers.SeparableConv1D(6, 3, padding="same", depth_multiplier=2, name="sep")(x)
    h = layers.DepthwiseConv1D(3, strides=2, depth_multiplier=2, activation="relu", name="dw")(h)
    return keras.Model(x, layers.LSTM(5, name="lstm")(h), name="separable")


def _separable_image() -> Any:
    x = keras.Input((9, 8, 3), name="image")
    h = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    h = layers.SeparableConv2D(4, (3, 2), strides=(2, 1), name="sep")(h)  # (4, 7, 4)
    return keras.Model(x, layers.GRU(3, name="gru")(layers.Reshape((4, 28))(h)))


MODELS = {"crnn": (_crnn, (3, 11, 5)), "image_rows": (_image_rows, (2, 9, 8, 3))}
MODELS["separable"] = (_separable, (3, 11, 4))
MODELS["separable_image"] = (_separable_image, (2, 9, 8, 3))
MODELS["padded_image"] = (_padded_image, (2, 7, 6, 2))
MODELS["options"] = (_options, (3, 13, 4))


def _build(name: str) -> tuple[Any, np.ndarray]:
    keras.utils.set_random_seed(len(name))
    builder, shape = MODELS[name]
    model = builder()
    saved_models.randomize(model, len(name))
    return model, np.random.default_rng(5).standard_normal(shape).astype("float32")


@pytest.fixture(scope="module", params=sorted(MODELS))
def saved(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any, np.ndarray, dict]:
    model, x = _build(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    paths = {suffix: folder / f"{request.param}{suffix}" for suffix in (".keras", ".h5")}
    for path in paths.values():
        model.save(path)
    return request.param, model, x, paths


def _torch_run(module: Any, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_the_file_ports_to_torch_and_matches_the_model(saved, suffix: str) -> None:
    _, model, x, paths = saved
    port = keras_to_torch(paths[suffix])
    assert port.verified_against is not None
    np.testing.assert_allclose(_torch_run(port, x), np.asarray(model(x)), rtol=0, atol=2e-5)


def test_the_reference_matches_the_model(saved) -> None:
    _, model, x, _ = saved
    (reference,) = run_model_reference(graph_from_keras(model), [x])
    np.testing.assert_allclose(reference, np.asarray(model(x)), rtol=0, atol=2e-5)


def test_compare_runs_every_column_and_passes(saved) -> None:
    _, _, _, paths = saved
    report = compare(str(paths[".keras"]))
    assert bool(report), report
    frameworks = {run.spec.framework for run in report.runs}
    assert {"reference", "torch", "keras", "onnxruntime", "torch-onnx"} <= frameworks
    assert all(run.error is None for run in report.runs)


def test_the_onnx_export_matches_the_model(saved) -> None:
    _, model, x, paths = saved
    exported = to_onnx(str(paths[".keras"]))
    ops = {node.op_type for node in exported.graph.node}
    assert "Conv" in ops
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(actual, np.asarray(model(x)), rtol=0, atol=2e-5)


def test_the_strided_same_onnx_export_keeps_lengths_dynamic() -> None:
    """TensorFlow's pads depend on the length: 10 steps get (0, 1), 11 get (1, 1)."""
    keras.utils.set_random_seed(3)
    x = keras.Input((None, 2))
    model = keras.Model(x, layers.Conv1D(3, 3, strides=2, padding="same")(x))
    saved_models.randomize(model, 3)
    exported = to_onnx(model)
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    port = keras_to_torch(model)
    for steps in (10, 11):
        data = np.random.default_rng(steps).standard_normal((2, steps, 2)).astype("float32")
        expected = np.asarray(model(data))
        (actual,) = session.run(None, {session.get_inputs()[0].name: data})
        np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-5)
        np.testing.assert_allclose(_torch_run(port, data), expected, rtol=0, atol=2e-5)


def test_a_mask_ends_at_a_convolution_as_in_keras() -> None:
    """Keras 3 drops the mask a Conv1D receives (with a warning): the LSTM after it reads
    every step, padding included, and so does the port."""
    keras.utils.set_random_seed(4)
    ids = keras.Input((None,), dtype="int32")
    h = layers.Embedding(saved_models.VOCABULARY, 4, mask_zero=True)(ids)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = layers.Conv1D(5, 2, padding="same")(h)
    assert any("does not support masking" in str(w.message) for w in caught)
    model = keras.Model(ids, layers.LSTM(3)(h))
    saved_models.randomize(model, 4)
    graph = graph_from_keras(model)
    assert graph.masked(model.layers[1].name) and not graph.masked(model.layers[2].name)
    tokens = saved_models.token_batch(np.random.default_rng(4))
    with torch.no_grad():
        actual = keras_to_torch(model)(torch.from_numpy(tokens).long()).numpy()
    np.testing.assert_allclose(actual, np.asarray(model(tokens)), rtol=0, atol=2e-5)


def test_keras2_files_port_too(tmp_path: Path) -> None:
    tf_keras = pytest.importorskip("tf_keras")
    k2 = tf_keras.layers
    model = tf_keras.Sequential(
        [
            k2.InputLayer((12, 4)),
            k2.ZeroPadding1D(2),
            k2.Conv1D(6, 3, strides=2, padding="same", activation="relu"),
            k2.Cropping1D((1, 2)),
            k2.Conv1D(5, 2, padding="causal", dilation_rate=2),
            k2.SeparableConv1D(4, 2, depth_multiplier=2),
            k2.GRU(3),
        ]
    )
    saved_models.randomize(model, 6)
    path = tmp_path / "k2_conv.h5"
    model.save(path)
    port = keras_to_torch(path)
    assert "tf_keras" in port.verified_against
    x = np.random.default_rng(6).standard_normal((3, 12, 4)).astype("float32")
    np.testing.assert_allclose(_torch_run(port, x), np.asarray(model(x)), rtol=0, atol=2e-5)


def test_a_padding_keras_cannot_read_is_refused_by_name(tmp_path: Path) -> None:
    x = keras.Input((8, 3))
    model = keras.Model(x, layers.Conv1D(2, 3, padding="same", name="conv")(x))
    config = model.get_config()
    config["layers"][1]["config"]["padding"] = "full"
    from xframe_bilstm.keras_files.config import build_graph, parse_layers

    spec = parse_layers({"class_name": "Functional", "config": config}, major=3, source="m")
    with pytest.raises(UnsupportedFeatureError, match=r"'conv' \(Conv1D\): padding='full'"):
        build_graph(spec, lambda layer: [])


@pytest.mark.parametrize("major", [3, 2])
def test_an_image_rescaled_in_the_model_ports_too(major: int, tmp_path: Path) -> None:
    """``Rescaling(1 / 255, offset=-0.5)`` before the convolution: times, then plus."""
    framework = keras if major == 3 else pytest.importorskip("tf_keras")
    L = framework.layers
    x = framework.Input((6, 5, 1))
    h = L.Conv2D(3, 3, name="conv")(L.Rescaling(1 / 255, offset=-0.5, name="scale")(x))
    model = framework.Model(x, L.GRU(4, name="gru")(L.Reshape((4, 9))(h)))
    path = tmp_path / ("scaled.keras" if major == 3 else "scaled.h5")
    model.save(path)
    ops = [(r.name, r.options["op"]) for r in read_model(path).layers if r.kind == "scalar_op"]
    assert ops == [("scale_multiply", "multiply"), ("scale", "add")]
    pixels = np.random.default_rng(2).integers(0, 256, (2, 6, 5, 1)).astype("float32")
    port = keras_to_torch(path)
    np.testing.assert_allclose(_torch_run(port, pixels), np.asarray(model(pixels)), atol=2e-5)


@pytest.mark.parametrize("scale", [[0.5, 1.0, 2.0], np.array([[0.5, 1.0, 2.0]], "float32")])
def test_per_channel_rescaling_ports(scale: Any, tmp_path: Path) -> None:
    """An RGB image's channels scaled and shifted each its own way (a list, or an array
    Keras saves as ``__numpy__``), before the convolution."""
    x = keras.Input((6, 5, 3))
    scaled = layers.Rescaling(scale, offset=[-1.0, 0.0, 0.5], name="scale")(x)
    h = layers.Conv2D(2, 3, name="conv")(scaled)
    model = keras.Model(x, layers.GRU(4, name="gru")(layers.Reshape((4, 6))(h)))
    model.save(tmp_path / "channels.keras")
    assert read_model(tmp_path / "channels.keras").layer("scale").kind == "batch_norm"
    pixels = np.random.default_rng(3).uniform(0, 1, (2, 6, 5, 3)).astype("float32")
    port = keras_to_torch(tmp_path / "channels.keras")  # checked against the model
    np.testing.assert_allclose(_torch_run(port, pixels), np.asarray(model(pixels)), atol=2e-5)


def test_rescaling_per_channel_of_another_axis_is_refused_by_name() -> None:
    x = keras.Input((3, 4))
    model = keras.Model(x, layers.Rescaling(np.ones((3, 1), "float32"), name="scale")(x))
    with pytest.raises(UnsupportedFeatureError, match=r"'scale'.*of the last axis"):
        keras_to_torch(model)
