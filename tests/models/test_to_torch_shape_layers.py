"""Merges, Permute, RepeatVector, TimeDistributed over any layer, activation layers and
inference identities, in real Keras models: saved as .keras and .h5, ported to torch,
compared on the reference, torch, Keras and onnxruntime, exported to ONNX, and rebuilt."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm import compare, diagnose, keras_to_torch, lint  # noqa: E402
from xframe_bilstm.adapters.keras import graph_to_keras  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.inputs import example_inputs  # noqa: E402
from xframe_bilstm.models.live import graph_from_keras  # noqa: E402
from xframe_bilstm.onnx_converters import to_onnx  # noqa: E402
from xframe_bilstm.reference import run_model_reference  # noqa: E402

from ..saved_models import randomize  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch, pytest.mark.onnx]
L = keras.layers
MERGES = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]


def two_branches(merge: str) -> Any:
    """Input -> LSTM -> [Dense, Dense] -> merge -> Permute -> Dense."""
    x = keras.Input((5, 3), name="x")
    h = L.LSTM(4, return_sequences=True, name="lstm")(x)
    a = L.Dense(6, activation="tanh", name="a")(h)
    b = L.Dense(6, name="b")(h)
    merged = getattr(L, merge)(name="merged")([a, b])
    y = L.Permute((2, 1), name="permute")(merged)
    return keras.Model(x, L.Dense(2, name="out")(y), name=f"two_{merge.lower()}")


def masked_merge(merge: str) -> Any:
    """Both merged sequences carry the Embedding's mask into an LSTM that reads it."""
    ids = keras.Input((None,), dtype="int32", name="ids")
    e = L.Embedding(30, 4, mask_zero=True, name="embedding")(ids)
    a = L.LSTM(5, return_sequences=True, name="a")(e)
    b = L.GRU(5, return_sequences=True, name="b")(e)
    merged = getattr(L, merge)(name="merged")([a, b])
    return keras.Model(ids, L.LSTM(3, name="last")(merged), name=f"masked_{merge.lower()}")


def half_masked_merge(merge: str) -> Any:
    """One masked input, one without a mask: Keras 3 replaces masked values, drops the mask."""
    ids = keras.Input((6,), dtype="int32", name="ids")
    features = keras.Input((6, 4), name="features")
    e = L.Embedding(30, 4, mask_zero=True, name="embedding")(ids)
    merged = getattr(L, merge)(name="merged")([e, L.Dense(4, name="dense")(features)])
    return keras.Model([ids, features], L.Flatten(name="flat")(merged), name="half_masked")


def activation_layers() -> Any:
    x = keras.Input((4, 6), name="x")
    h = L.Dense(6, name="dense")(x)
    outputs = [
        L.ReLU(max_value=2.5, negative_slope=0.1, threshold=0.4, name="relu")(h),
        L.ReLU(max_value=6.0, name="relu6")(h),
        L.LeakyReLU(negative_slope=0.2, name="leaky")(h),
        L.ELU(alpha=0.7, name="elu")(h),
        L.PReLU(shared_axes=[1], name="prelu")(h),
        L.Softmax(axis=1, name="softmax_time")(h),
        L.Softmax(name="softmax")(h),
    ]
    return keras.Model(x, L.Concatenate(name="joined")(outputs), name="activation_layers")


def reshaping() -> Any:
    """TimeDistributed over Flatten, Reshape, Activation and Dense; RepeatVector;
    inference identities."""
    x = keras.Input((5, 2, 3), name="x")
    flat = L.TimeDistributed(L.Flatten(), name="td_flatten")(x)
    flat = L.SpatialDropout1D(0.3, name="spatial")(flat)
    flat = L.GaussianNoise(0.5, name="noise")(flat)
    shaped = L.TimeDistributed(L.Reshape((3, 2)), name="td_reshape")(x)
    shaped = L.TimeDistributed(L.Activation("gelu"), name="td_gelu")(shaped)
    shaped = L.TimeDistributed(L.Flatten(), name="td_flatten2")(shaped)
    dense = L.TimeDistributed(L.Dense(4, activation="mish"), name="td_dense")(flat)
    dense = L.GaussianDropout(0.2, name="gaussian_dropout")(dense)
    dense = L.AlphaDropout(0.2, name="alpha_dropout")(dense)
    dense = L.ActivityRegularization(l1=0.1, name="regularization")(dense)
    last = L.LSTM(3, name="lstm")(L.Concatenate(name="joined")([shaped, dense]))
    repeated = L.RepeatVector(4, name="repeat")(last)
    return keras.Model(x, L.TimeDistributed(L.PReLU(), name="td_prelu")(repeated), name="reshape")


BUILDERS = {
    **{f"two_{m.lower()}": (lambda m=m: two_branches(m)) for m in MERGES},
    **{f"masked_{m.lower()}": (lambda m=m: masked_merge(m)) for m in MERGES},
    "half_masked_multiply": lambda: half_masked_merge("Multiply"),
    "half_masked_maximum": lambda: half_masked_merge("Maximum"),
    "activation_layers": activation_layers,
    "reshaping": reshaping,
}


def build(name: str) -> Any:
    keras.utils.set_random_seed(zlib.crc32(name.encode()))
    model = BUILDERS[name]()
    randomize(model, zlib.crc32(name.encode()), scale=0.8)
    return model


def run_onnx(model: Any, inputs: list[np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, inputs)))[0]


def keras_call(model: Any, inputs: list[np.ndarray]) -> np.ndarray:
    return np.asarray(model(inputs if len(inputs) > 1 else inputs[0], training=False))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_model_ports_exports_and_rebuilds_as_keras_computes_it(name: str, tmp_path: Path):
    model = build(name)
    graph = graph_from_keras(model)
    inputs = example_inputs(graph, batch=4, steps=6, seed=2)
    expected = keras_call(model, inputs)
    atol = derived_tolerance(graph, inputs)
    (reference,) = run_model_reference(graph, inputs)
    np.testing.assert_allclose(reference, expected, rtol=0, atol=atol)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    port = keras_to_torch(path)  # verified against Keras's own load of the file
    with torch.no_grad():
        actual = port(*[torch.from_numpy(i) for i in inputs]).numpy()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=atol)
    np.testing.assert_allclose(run_onnx(to_onnx(path), inputs), expected, rtol=0, atol=atol)
    rebuilt = graph_to_keras(graph)  # the rebuild compare() runs
    np.testing.assert_allclose(keras_call(rebuilt, inputs), expected, rtol=0, atol=atol)


@pytest.mark.parametrize("name", ["two_multiply", "masked_maximum", "reshaping"])
def test_compare_runs_the_model_on_every_framework(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.keras"
    build(name).save(path)
    report = compare(str(path), frameworks=["torch", "keras", "onnxruntime"])
    assert bool(report), report.failures
    labels = " ".join(pair.label for pair in report.pairs)
    for side in ("reference[cpu,float64]", "torch[", "keras[", "onnxruntime["):
        assert side in labels
    model = build(name)
    assert diagnose(model, keras_to_torch(model)).code == "equivalent"


@pytest.mark.parametrize("name", ["two_average", "activation_layers", "reshaping"])
def test_an_h5_file_ports_as_keras_computes_it(name: str, tmp_path: Path) -> None:
    model = build(name)
    path = tmp_path / f"{name}.h5"
    model.save(path)
    inputs = example_inputs(graph_from_keras(model), batch=3, steps=6, seed=4)
    port = keras_to_torch(path)
    with torch.no_grad():
        actual = port(*[torch.from_numpy(i) for i in inputs]).numpy()
    atol = derived_tolerance(graph_from_keras(model), inputs)
    np.testing.assert_allclose(actual, keras_call(model, inputs), rtol=0, atol=atol)


def test_a_softmax_layer_under_a_mask_is_refused_by_name() -> None:
    ids = keras.Input((None,), dtype="int32", name="ids")
    e = L.Embedding(10, 6, mask_zero=True, name="embedding")(ids)
    x = L.LSTM(6, return_sequences=True, name="lstm")(e)
    y = L.TimeDistributed(L.Softmax(), name="td_softmax")(x)
    model = keras.Model(ids, L.GlobalAveragePooling1D(name="pool")(y))
    with pytest.raises(UnsupportedFeatureError, match=r"'td_softmax' \(TimeDistributed\(Softmax"):
        keras_to_torch(model)


def test_keras2_merges_and_activation_layers_keep_keras2_meanings(tmp_path: Path) -> None:
    """tf_keras: a merge of masked inputs keeps a step where every input does, and its values
    ignore the masks; LeakyReLU's slope is ``alpha``; ThresholdedReLU(theta)."""
    k2 = pytest.importorskip("tf_keras")
    layers = k2.layers
    ids = k2.Input((None,), dtype="int32", name="ids")
    e = layers.Embedding(30, 4, mask_zero=True, name="embedding")(ids)
    a = layers.LSTM(5, return_sequences=True, name="a")(e)
    b = layers.Masking(mask_value=0.0, name="masking")(layers.Dense(5, name="b")(e))
    merged = layers.Multiply(name="merged")([a, b])
    merged = layers.LeakyReLU(alpha=0.1, name="leaky")(merged)
    merged = layers.ThresholdedReLU(theta=0.2, name="thresholded")(merged)
    model = k2.Model(ids, layers.LSTM(3, name="last")(merged))
    randomize(model, 5, scale=0.8)
    path = tmp_path / "k2.h5"
    model.save(path)
    ids_batch = np.array([[3, 4, 5, 6], [7, 8, 0, 0], [0, 0, 9, 1]], dtype="int32")
    expected = np.asarray(model(ids_batch, training=False))
    port = keras_to_torch(path)  # verified against tf_keras's load of the file
    with torch.no_grad():
        actual = port(torch.from_numpy(ids_batch).long()).numpy()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)
    exported = run_onnx(to_onnx(path), [ids_batch.astype(np.int64)])
    np.testing.assert_allclose(exported, expected, rtol=0, atol=1e-5)
    with pytest.raises(UnsupportedFeatureError, match=r"'merged' \(Multiply\): Keras 2 keeps"):
        graph_to_keras(graph_from_keras(model))
    assert [trap.trap for trap in lint(str(path)) if trap.layer == "merged"] == ["merged masks"]
