"""Transposed convolutions both ways: Keras's ``Conv1DTranspose``/``Conv2DTranspose`` and
torch's ``ConvTranspose1d/2d``, each option that moves the output's steps.

Expected values come from the original: the Keras model's own call, or the torch
module's; the reference is also checked against torch's transposed convolution, an
independent implementation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm import UnsupportedFeatureError, keras_to_torch, torch_to_keras  # noqa: E402
from xframe_bilstm.adapters.keras.graph import graph_to_keras  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402
from xframe_bilstm.onnx_converters import to_onnx  # noqa: E402
from xframe_bilstm.reference import run_model_reference  # noqa: E402

from ..audio_models import Denoiser, SpectrogramCRN  # noqa: E402
from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch, pytest.mark.onnx]
nn, F = torch.nn, torch.nn.functional
L = keras.layers

# Keras's own layers: (input shape, layer), each an option that moves the steps kept.
KERAS_CASES = {
    "valid": ((None, 3), lambda: L.Conv1DTranspose(4, 3, strides=2)),
    "kernel_below_stride": ((None, 3), lambda: L.Conv1DTranspose(4, 2, strides=3)),
    "same": ((None, 3), lambda: L.Conv1DTranspose(4, 4, strides=2, padding="same")),
    "same_output_padding": (
        (None, 3),
        lambda: L.Conv1DTranspose(4, 3, strides=2, padding="same", output_padding=1),
    ),
    "valid_output_padding": (
        (None, 3),
        lambda: L.Conv1DTranspose(4, 5, strides=2, output_padding=1, activation="relu"),
    ),
    "dilated_same": ((None, 3), lambda: L.Conv1DTranspose(4, 3, dilation_rate=2, padding="same")),
    "channels_first": (
        (3, None),
        lambda: L.Conv1DTranspose(5, 3, strides=2, data_format="channels_first"),
    ),
    "image_same": ((6, 5, 3), lambda: L.Conv2DTranspose(4, (3, 2), strides=(2, 1), padding="same")),
    "image_channels_first": (
        (3, 6, 5),
        lambda: L.Conv2DTranspose(4, 3, strides=2, data_format="channels_first", use_bias=False),
    ),
}


def _keras_model(name: str) -> tuple[Any, np.ndarray]:
    shape, layer = KERAS_CASES[name]
    x = keras.Input(shape, name="x")
    model = keras.Model(x, layer()(x), name=name)
    rng = np.random.default_rng(len(name))
    model.set_weights([rng.standard_normal(w.shape).astype("float32") for w in model.get_weights()])
    # 7 steps: a channels-first output of 15 steps and 5 filters avoids Keras's own bias
    # trap (tests/lint/test_convolution.py)
    data = rng.standard_normal((2, *[7 if s is None else s for s in shape])).astype("float32")
    return model, data


def _torch_run(module: Any, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name", sorted(KERAS_CASES))
def test_a_keras_file_ports_exports_and_rebuilds_as_the_model_computes(
    name: str, tmp_path: Path
) -> None:
    model, x = _keras_model(name)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    expected = np.asarray(model(x))
    graph = read_model(path)
    tolerance = derived_tolerance(graph, [x])
    (reference,) = run_model_reference(graph, [x])
    np.testing.assert_allclose(reference, expected, rtol=0, atol=tolerance)
    port = keras_to_torch(path)  # verified against the model Keras loads
    np.testing.assert_allclose(_torch_run(port, x), expected, rtol=0, atol=tolerance)
    session = ort.InferenceSession(to_onnx(path).SerializeToString())
    (exported,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(exported, expected, rtol=0, atol=tolerance)
    rebuilt = graph_to_keras(graph)  # compare's keras column: this package's layer
    np.testing.assert_allclose(np.asarray(rebuilt(x)), expected, rtol=0, atol=tolerance)


def test_a_keras2_file_ports_too(tmp_path: Path) -> None:
    tf_keras = pytest.importorskip("tf_keras")
    x = tf_keras.Input((None, 3))
    layer = tf_keras.layers.Conv1DTranspose(4, 3, strides=2, padding="same", name="up")
    model = tf_keras.Model(x, layer(x))
    path = tmp_path / "k2.h5"
    model.save(path)
    data = np.random.default_rng(3).standard_normal((2, 7, 3)).astype("float32")
    port = keras_to_torch(path)
    assert "tf_keras" in port.verified_against
    np.testing.assert_allclose(_torch_run(port, data), model(data).numpy(), atol=1e-5)


# torch's modules: (kernel, stride, padding, output_padding, dilation), each moving the
# steps kept differently: cut at both ends, steps added back at the end, dilated taps.
TORCH_CASES = [(4, 2, 1, 0, 1), (3, 2, 0, 1, 1), (2, 3, 0, 0, 1), (3, 1, 1, 0, 2), (5, 2, 2, 1, 1)]


@pytest.mark.parametrize("case", TORCH_CASES, ids=str)
def test_torch_modules_port_and_the_reference_is_torchs_computation(case: tuple) -> None:
    k, s, p, op, d = case
    torch.manual_seed(k * 10 + s)
    module = nn.Sequential(
        nn.ConvTranspose1d(3, 4, k, stride=s, padding=p, output_padding=op, dilation=d),
        nn.Tanh(),
    ).eval()
    graph = graph_from_torch(module)
    (record,) = [r for r in graph.layers if r.kind == "conv_transpose"]
    assert record.options["crops"] == ((p, p - op),)
    x = np.random.default_rng(k).standard_normal((2, 3, 9)).astype("float32")
    tolerance = derived_tolerance(graph, [x])
    np.testing.assert_allclose(
        run_model_reference(graph, [x])[0], _torch_run(module, x), rtol=0, atol=tolerance
    )
    model = torch_to_keras(module)  # verified against the module
    np.testing.assert_allclose(np.asarray(model(x)), _torch_run(module, x), atol=tolerance)


def test_the_keras_port_is_saved_and_read_back(tmp_path: Path) -> None:
    module = nn.Sequential(
        nn.ConvTranspose2d(3, 2, (3, 4), stride=2, padding=1, output_padding=(1, 0))
    )
    model = torch_to_keras(module.eval())
    path = tmp_path / "port.keras"
    model.save(path)
    (record,) = [r for r in read_model(path).layers if r.kind == "conv_transpose"]
    assert record.options["crops"] == ((1, 0), (1, 1))
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 6)).astype("float32")
    np.testing.assert_allclose(
        _torch_run(keras_to_torch(path), x), _torch_run(module, x), rtol=0, atol=1e-5
    )


def test_demucs_denoiser_ports_at_any_length(tmp_path: Path) -> None:
    torch.manual_seed(71)
    module = Denoiser().eval()
    graph = graph_from_torch(module)
    # the first skip is as long as the BLSTM's output: its cut computes nothing
    (cut,) = [r for r in graph.layers if r.kind == "slice_to"]
    assert cut.options == {"axis": 2}
    model = torch_to_keras(module)  # (B, 1, samples) guessed from its first Conv1d
    model.save(tmp_path / "demucs.keras")  # read back: the cuts are this package's layers
    assert "slice_to" in [r.kind for r in read_model(tmp_path / "demucs.keras").layers]
    for samples in (100, 164, 403):
        x = np.random.default_rng(samples).standard_normal((2, 1, samples)).astype("float32")
        np.testing.assert_allclose(np.asarray(model(x)), _torch_run(module, x), atol=1e-6)
    x = np.random.default_rng(1).standard_normal((2, 1, 164)).astype("float32")
    assert_agrees_everywhere(module, inputs=x)


def test_a_spectrogram_crn_compares_on_every_framework_at_its_own_frames() -> None:
    torch.manual_seed(72)
    module = SpectrogramCRN().eval()
    x = np.random.default_rng(2).standard_normal((2, 1, 9, 16)).astype("float32")
    assert_agrees_everywhere(module, inputs=x)  # time found on the frames' axis, not F
    graph = graph_from_torch(module, example_shapes=[x.shape[1:]])
    assert graph.layer(graph.inputs[0]).options["shape"] == (1, None, 16)


@pytest.mark.parametrize(
    ("module", "says"),
    [
        (nn.ConvTranspose1d(4, 4, 3, groups=2), "groups=2"),
        (nn.ConvTranspose1d(4, 2, 3, stride=2, dilation=2), "strides above 1 together"),
        (nn.ConvTranspose1d(4, 2, 3, dilation=2, output_padding=1), "steps added at the end"),
    ],
    ids=["groups", "stride-and-dilation", "output-padding-at-stride-1"],
)
def test_what_keras_cannot_compute_is_refused_by_name(module: Any, says: str) -> None:
    with pytest.raises(UnsupportedFeatureError, match=says):
        torch_to_keras(nn.Sequential(module).eval())
