"""A whole-model port converted back to Keras holds one copy of its weights.

The weights come from the port's parameters once and go into Keras's variables, created
holding them: the arrays read back leave as Keras takes them, and each variable's value is
exactly the original Keras model's weight (the port's parameters, as Keras lays them out).
"""

from __future__ import annotations

import json
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # before Keras/TensorFlow
keras = pytest.importorskip("keras")

from xframe_bilstm import keras_to_torch, torch_to_keras  # noqa: E402
from xframe_bilstm.adapters.keras.initial_weights import tensor_copy  # noqa: E402
from xframe_bilstm.models import torch_readback  # noqa: E402

from .read_arrays import alive_after_keras_build, record_arrays  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def _crnn(path: Path) -> Any:
    """A small CRNN of every kind whose variables are created from the weights, saved."""
    keras.utils.set_random_seed(5)
    layers = keras.layers
    x = keras.Input((12, 6), name="frames")
    h = layers.Conv1D(8, 3, padding="same", activation="relu", name="conv")(x)
    h = layers.BatchNormalization(name="norm")(h)
    h = layers.LayerNormalization(name="layer_norm")(h)
    h = layers.Bidirectional(layers.LSTM(5, return_sequences=True), name="bilstm")(h)
    model = keras.Model(x, layers.Dense(3, name="dense")(h), name="crnn")
    rng = np.random.default_rng(5)
    model.set_weights(
        [np.abs(rng.standard_normal(w.shape)).astype(w.dtype) + 0.1 for w in model.get_weights()]
    )
    model.save(path)
    return model


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    path = tmp_path_factory.mktemp("memory") / "crnn.keras"
    return _crnn(path), path


@pytest.mark.parametrize("verify", [False, True])
def test_the_arrays_read_back_leave_as_keras_takes_them(
    original: tuple[Any, Path], verify: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, path = original
    port = keras_to_torch(path, verify=False)
    read: list[weakref.ref[np.ndarray]] = []
    current_graph = torch_readback.current_graph

    def reading(module: Any, **options: Any) -> Any:
        graph = current_graph(module, **options)
        for record in graph.layers:
            read.extend(weakref.ref(array) for array in record_arrays(record))
        return graph

    monkeypatch.setattr(torch_readback, "current_graph", reading)
    alive = alive_after_keras_build(monkeypatch, read)
    model = torch_to_keras(port, verify=verify)
    assert len(read) == 16  # conv 2, norm 4, layer_norm 2, bilstm 2 x 3, dense 2
    assert alive == [0], f"{alive} of {len(read)} arrays read back outlive Keras's build"
    # The port's own graph keeps its structure, untouched by the conversion.
    kernel = port.keras_graph.layer("conv").weights["kernel"]
    assert kernel.shape == (3, 6, 8) and kernel.strides == (0, 0, 0)
    assert model.get_layer("conv").kernel.shape == (3, 6, 8)


def test_the_variables_hold_the_original_weights_exactly(original: tuple[Any, Path]) -> None:
    model, path = original
    port = keras_to_torch(path, verify=False)
    back = torch_to_keras(port, verify=False)
    for layer in model.layers:
        if not layer.weights:
            continue
        twin = back.get_layer(layer.name)
        for expected, actual in zip(layer.weights, twin.weights, strict=True):
            np.testing.assert_array_equal(actual.numpy(), expected.numpy(), err_msg=actual.path)
    x = np.random.default_rng(0).standard_normal((2, 12, 6)).astype("float32")
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))


def test_the_configured_initializers_are_back_and_saving_embeds_no_weight(
    original: tuple[Any, Path], tmp_path: Path
) -> None:
    _, path = original
    back = torch_to_keras(keras_to_torch(path, verify=False), verify=False)
    assert back.get_layer("dense").kernel_initializer.__class__.__name__ == "Zeros"
    norm = back.get_layer("norm")
    assert norm.moving_variance_initializer.__class__.__name__ == "Ones"
    assert len(json.dumps(back.get_config())) < 20_000
    saved = tmp_path / "back.keras"
    back.save(saved)
    x = np.random.default_rng(1).standard_normal((2, 12, 6)).astype("float32")
    loaded = keras.saving.load_model(saved)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), back.predict(x, verbose=0))


def test_a_tensor_copy_of_a_parameter_shares_no_memory_with_it() -> None:
    parameter = torch.arange(12.0).reshape(3, 4)
    kernel = parameter.numpy().T  # torch's (out, in) read as Keras's (in, out)
    variable = keras.Variable(
        initializer=lambda shape, dtype=None: tensor_copy(kernel, dtype), shape=(4, 3)
    )
    np.testing.assert_array_equal(variable.numpy(), np.arange(12.0).reshape(3, 4).T)
    with torch.no_grad():
        parameter.add_(100.0)
    np.testing.assert_array_equal(variable.numpy(), np.arange(12.0).reshape(3, 4).T)
    variable.assign_add(np.ones((4, 3), "float32"))
    np.testing.assert_array_equal(parameter.numpy(), np.arange(12.0).reshape(3, 4) + 100.0)


@pytest.mark.parametrize("layout", ["strided", "unaligned", "read-only", "float64"])
def test_a_tensor_copy_of_any_array_has_its_values(layout: str) -> None:
    source = np.arange(1.0, 41.0, dtype="float32").reshape(5, 8)
    array = {
        "strided": source[:, ::2],
        "unaligned": np.frombuffer(source.tobytes()[4:] + b"\0" * 4, "float32").reshape(5, 8),
        "read-only": np.require(source, requirements="O"),
        "float64": source.astype("float64"),
    }[layout]
    if layout == "read-only":
        array.setflags(write=False)
    copy = np.asarray(tensor_copy(array, "float32"))
    np.testing.assert_array_equal(copy, array.astype("float32"))
    assert copy.dtype == np.float32 and not np.shares_memory(copy, array)
