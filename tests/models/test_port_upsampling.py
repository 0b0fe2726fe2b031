"""Nearest-neighbour upsampling by whole factors both ways: Keras's ``UpSampling1D`` and
``UpSampling2D``, torch's ``nn.Upsample`` and ``F.interpolate(scale_factor=k)`` (a sound
event detector's frames stretched back to the input's rate). Each repeats every position
``k`` times, a ``repeat`` record per axis. Expected values come from the original: the
Keras model's own call, or the torch module's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm import UnsupportedFeatureError, keras_to_torch, torch_to_keras  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402
from xframe_bilstm.onnx_converters import to_onnx  # noqa: E402
from xframe_bilstm.reference import run_model_reference  # noqa: E402

from ..audio_models import EventDetector  # noqa: E402
from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch, pytest.mark.onnx]
nn, F = torch.nn, torch.nn.functional
L = keras.layers


def _keras_model() -> tuple[Any, np.ndarray]:
    """Frames -> GRU -> UpSampling1D(3); an image -> UpSampling2D((2, 3)), channels
    first; both joined after a Flatten."""
    frames, image = keras.Input((None, 4), name="frames"), keras.Input((2, 3, 5), name="image")
    h = L.UpSampling1D(3, name="up_frames")(L.GRU(5, return_sequences=True, name="gru")(frames))
    up = L.UpSampling2D((2, 3), data_format="channels_first", name="up_image")(image)
    model = keras.Model([frames, image], [h, L.Flatten(name="flat")(up)])
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    return model, [
        rng.standard_normal((2, 6, 4)).astype("float32"),
        rng.standard_normal((2, 2, 3, 5)).astype("float32"),
    ]


def test_a_keras_file_ports_and_exports_as_the_model_computes(tmp_path: Path) -> None:
    model, xs = _keras_model()
    path = tmp_path / "upsampling.keras"
    model.save(path)
    expected = [np.asarray(y) for y in model(xs)]
    graph = read_model(path)
    assert {r.name: r.options for r in graph.layers if r.kind == "repeat"} == {
        "up_frames": {"axis": 1, "repeats": 3},
        "up_image_axis2": {"axis": 2, "repeats": 2},  # channels first: (B, C, H, W)
        "up_image": {"axis": 3, "repeats": 3},
    }
    tolerance = derived_tolerance(graph, xs)
    for got, want in zip(run_model_reference(graph, xs), expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=tolerance)
    port = keras_to_torch(path)  # verified against the model Keras loads
    with torch.no_grad():
        ported = port(*map(torch.from_numpy, xs))
    for got, want in zip(ported, expected):
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=tolerance)
    session = ort.InferenceSession(to_onnx(path).SerializeToString())
    feeds = {i.name: x for i, x in zip(session.get_inputs(), xs)}
    for got, want in zip(session.run(None, feeds), expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=tolerance)


def test_bilinear_upsampling_is_refused_by_name(tmp_path: Path) -> None:
    x = keras.Input((3, 4, 2))
    model = keras.Model(x, L.UpSampling2D(2, interpolation="bilinear", name="smooth")(x))
    with pytest.raises(UnsupportedFeatureError, match=r"'smooth'.*bilinear"):
        keras_to_torch(model)


def test_a_torch_event_detector_ports_at_any_length() -> None:
    torch.manual_seed(81)
    module = EventDetector().eval()
    graph = graph_from_torch(module)
    assert [r.class_name for r in graph.layers if r.kind == "repeat"] == ["upsample_nearest"] * 2
    model = torch_to_keras(module)
    for steps in (8, 14):
        x = np.random.default_rng(steps).standard_normal((2, steps, 8)).astype("float32")
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=0, atol=1e-6)
    assert_agrees_everywhere(
        module, inputs=np.random.default_rng(1).standard_normal((2, 10, 8)).astype("float32")
    )


@pytest.mark.parametrize(
    ("upsample", "says"),
    [
        (lambda h: F.interpolate(h, scale_factor=1.5), "by a fraction"),
        (lambda h: F.interpolate(h, size=20), "to a size"),
        (lambda h: F.interpolate(h, scale_factor=2, mode="linear"), "upsample_linear1d"),
    ],
    ids=["fraction", "size", "linear"],
)
def test_other_upsampling_is_refused_with_its_line(upsample, says: str) -> None:
    class Up(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(3, 4, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return upsample(self.gru(x)[0].transpose(1, 2))

    with pytest.raises(UnsupportedFeatureError, match=says) as caught:
        torch_to_keras(Up().eval())
    assert "test_port_upsampling.py" in str(caught.value)


def test_a_keras2_file_ports_too(tmp_path: Path) -> None:
    tf_keras = pytest.importorskip("tf_keras")
    x = tf_keras.Input((None, 3))
    h = tf_keras.layers.UpSampling1D(2)(tf_keras.layers.LSTM(4, return_sequences=True)(x))
    model = tf_keras.Model(x, h)
    path = tmp_path / "k2.h5"
    model.save(path)
    data = np.random.default_rng(5).standard_normal((2, 6, 3)).astype("float32")
    port = keras_to_torch(path)
    assert "tf_keras" in port.verified_against
    with torch.no_grad():
        np.testing.assert_allclose(
            port(torch.from_numpy(data)).numpy(), model(data).numpy(), atol=1e-5
        )
