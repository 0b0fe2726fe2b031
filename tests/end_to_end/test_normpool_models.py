"""Whole Keras models with normalization and pooling layers, saved as .keras and .h5 (Keras 3)
and as Keras 2 .h5 files: ported to torch, compared on every framework, exported to ONNX and
rebuilt in Keras from the graph, each against the model's own call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm import compare, keras_to_torch  # noqa: E402
from xframe_bilstm.adapters.keras.graph import graph_to_keras  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.inputs import example_inputs  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402
from xframe_bilstm.models.live import graph_from_keras  # noqa: E402
from xframe_bilstm.onnx_converters import to_onnx  # noqa: E402

from .. import normpool_models  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch, pytest.mark.onnx]
BUILDERS = {
    "sequence": normpool_models.sequence_model,
    "image": normpool_models.image_model,
    "masked": normpool_models.masked_model,
}


def _saved(name: str, suffix: str, directory: Path) -> tuple[Any, Path]:
    model = BUILDERS[name](keras)
    path = directory / f"{name}{suffix}"
    model.save(path)
    return model, path


def _inputs(model: Any) -> tuple[list[np.ndarray], float]:
    graph = graph_from_keras(model)
    inputs = example_inputs(graph, batch=4, steps=9, seed=11)  # padded rows for the mask
    return inputs, derived_tolerance(graph, inputs)


def _torch_output(module: Any, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_keras3_file_is_ported_compared_exported_and_rebuilt(name: str, tmp_path: Path) -> None:
    model, path = _saved(name, ".keras", tmp_path)
    (x,), tolerance = _inputs(model)
    expected = np.asarray(model(x))
    port = keras_to_torch(path)
    assert "keras.saving.load_model" in port.verified_against
    np.testing.assert_allclose(_torch_output(port, x), expected, rtol=0, atol=tolerance)

    report = compare(path)
    assert report, report.lines()
    assert {"reference", "torch", "keras", "onnxruntime"} <= {r.spec.framework for r in report.runs}

    session = ort.InferenceSession(to_onnx(path).SerializeToString())
    exported = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(exported, expected, rtol=0, atol=tolerance)

    rebuilt = graph_to_keras(read_model(path))  # what compare's keras column runs
    np.testing.assert_allclose(np.asarray(rebuilt(x)), expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("name", ["image", "sequence"])
def test_a_keras3_h5_file_is_ported_and_compared(name: str, tmp_path: Path) -> None:
    model, path = _saved(name, ".h5", tmp_path)
    (x,), tolerance = _inputs(model)
    port = keras_to_torch(path)
    np.testing.assert_allclose(_torch_output(port, x), np.asarray(model(x)), atol=tolerance)
    report = compare(path, frameworks=["torch", "onnxruntime"])
    assert report, report.lines()


@pytest.mark.parametrize("name", ["image", "sequence"])
def test_a_keras2_h5_file_with_list_axes_is_ported_and_compared(name: str, tmp_path: Path) -> None:
    tf_keras = pytest.importorskip("tf_keras")
    model = BUILDERS[name](tf_keras)
    path = tmp_path / f"{name}_k2.h5"
    model.save(path)
    rank = len(model.input_shape)
    assert model.get_layer("bn").get_config()["axis"] == [rank - 1]  # Keras 2's spelling
    graph = read_model(path)
    assert graph.layer("bn").options["axis"] == rank - 1
    (x,) = example_inputs(graph, batch=4, steps=9, seed=11)
    tolerance = derived_tolerance(graph, [x])
    port = keras_to_torch(path)
    assert "tf_keras.models.load_model" in port.verified_against
    np.testing.assert_allclose(_torch_output(port, x), model(x).numpy(), rtol=0, atol=tolerance)
    report = compare(path, frameworks=["torch", "onnxruntime"])
    assert report, report.lines()


def test_the_masks_pass_through_normalization_and_end_at_pooling() -> None:
    """As Keras 3: the normalizations pass the mask on, the LSTM
    keeps it, MaxPooling1D drops it (so the average after it counts every step) while the
    average of the LSTM's sequence counts the valid steps only."""
    model = normpool_models.masked_model(keras)
    graph = graph_from_keras(model)
    masked = {name: graph.masked(name) for name in ("bn", "ln", "gn", "lstm", "pool")}
    assert masked == {"bn": True, "ln": True, "gn": True, "lstm": True, "pool": False}
    assert model.get_layer("ln").output._keras_mask is not None
    assert getattr(model.get_layer("pool").output, "_keras_mask", None) is None
    (ids,), tolerance = _inputs(model)
    assert (ids == 0).any()  # padded rows, on the right and on the left
    expected = np.asarray(model(ids))
    port = keras_to_torch(model)
    np.testing.assert_allclose(_torch_output(port, ids), expected, rtol=0, atol=tolerance)
    # The mask reached the LSTM through the normalizations: Keras repeats the last valid
    # output over a right-padded row's padded steps.
    sequence = np.asarray(keras.Model(model.input, model.get_layer("lstm").output)(ids))
    row = int(np.flatnonzero((ids[:, 0] != 0) & (ids[:, -1] == 0))[0])
    length = int((ids[row] != 0).sum())
    np.testing.assert_array_equal(
        sequence[row, length:],
        sequence[row, length - 1 : length].repeat(ids.shape[1] - length, axis=0),
    )


@pytest.mark.parametrize("major", [3, 2])
def test_an_adapted_normalization_layer_ports_as_its_statistics_say(
    major: int, tmp_path: Path
) -> None:
    """Keras's preprocessing ``Normalization``, adapted to data (its mean and variance are
    weights), in front of an LSTM: ``(x - mean) / max(sqrt(variance), 1e-7)``."""
    framework = keras if major == 3 else pytest.importorskip("tf_keras")
    layers = framework.layers
    data = np.random.default_rng(4).normal(3.0, 2.0, (16, 6, 4)).astype("float32")
    norm = layers.Normalization(axis=-1, name="norm")
    norm.adapt(data)
    x = framework.Input((None, 4))
    model = framework.Model(x, layers.LSTM(5, name="lstm")(norm(x)))
    path = tmp_path / ("adapted.keras" if major == 3 else "adapted.h5")
    model.save(path)
    graph = read_model(path)
    assert graph.layer("norm").kind == "batch_norm"
    inputs = data[:3]
    expected = np.asarray(model(inputs))
    tolerance = derived_tolerance(graph, [inputs])
    np.testing.assert_allclose(
        _torch_output(keras_to_torch(path), inputs), expected, rtol=0, atol=tolerance
    )
    report = compare(path, frameworks=["torch", "keras", "onnxruntime"])
    assert report, report.lines()


@pytest.mark.parametrize("major", [3, 2])
def test_an_inverted_normalization_ports_back_to_the_data_scale(major: int, tmp_path: Path) -> None:
    """A forecaster's ``Normalization(invert=True)`` after its head, adapted to the targets:
    ``x * max(sqrt(variance), 1e-7) + mean``, per channel."""
    framework = keras if major == 3 else pytest.importorskip("tf_keras")
    layers = framework.layers
    targets = np.random.default_rng(5).normal(40.0, 7.0, (16, 6, 2)).astype("float32")
    denormalize = layers.Normalization(axis=-1, invert=True, name="denormalize")
    denormalize.adapt(targets)
    x = framework.Input((None, 3))
    h = layers.Dense(2, name="head")(layers.LSTM(5, return_sequences=True, name="lstm")(x))
    model = framework.Model(x, denormalize(h))
    path = tmp_path / ("inverted.keras" if major == 3 else "inverted.h5")
    model.save(path)
    graph = read_model(path)
    assert graph.layer("denormalize").kind == "batch_norm"
    inputs = np.random.default_rng(6).standard_normal((3, 6, 3)).astype("float32")
    expected = np.asarray(model(inputs))
    assert expected.mean() > 20  # back on the targets' scale
    tolerance = derived_tolerance(graph, [inputs])
    np.testing.assert_allclose(
        _torch_output(keras_to_torch(path), inputs), expected, rtol=0, atol=tolerance
    )
    report = compare(path, frameworks=["torch", "keras", "onnxruntime"])
    assert report, report.lines()
