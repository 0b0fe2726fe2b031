"""What a whole-model port is verified against, and that a corrupted weight copy fails it.

A live model is checked against its own call; a file against the model as the Keras that
wrote it loads and runs it (Keras 3, or tf_keras for Keras 2 files); without that Keras,
against the float64 reference reading of the file, and the port says which.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import ToleranceExceededError, keras_to_torch  # noqa: E402
from xframe_bilstm.models import torch_layers  # noqa: E402

from .. import saved_models  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def corrupt_dense_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Keras weight copied into a Dense or Embedding parameter gets 0.5 added."""
    original = torch_layers._tensor
    monkeypatch.setattr(torch_layers, "_tensor", lambda array: original(array) + 0.5)


@pytest.fixture(scope="module")
def k3_model_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    model, _ = saved_models.k3_classifier(keras)
    path = tmp_path_factory.mktemp("k3") / "classifier.keras"
    model.save(path)
    return model, path


@pytest.fixture(scope="module")
def k2_model_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    k2 = pytest.importorskip("tf_keras")
    model, _ = saved_models.k2_classifier(k2)
    path = tmp_path_factory.mktemp("k2") / "classifier.h5"
    model.save(path)
    return model, path


def test_live_whole_model_is_verified_against_its_own_call(
    k3_model_file, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = k3_model_file
    assert keras_to_torch(model).verified_against == "the Keras model's own call"
    corrupt_dense_copies(monkeypatch)
    with pytest.raises(ToleranceExceededError, match="vs its torch port"):
        keras_to_torch(model)
    assert keras_to_torch(model, verify=False).verified_against is None


def test_keras3_file_is_verified_against_the_model_keras_loads(
    k3_model_file, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, path = k3_model_file
    module = keras_to_torch(path)
    assert "keras.saving.load_model(safe_mode=True)" in module.verified_against
    assert (module.compute_dtype, module.keras_compute_dtype) == ("float32", "float32")
    corrupt_dense_copies(monkeypatch)
    with pytest.raises(ToleranceExceededError, match=r"keras\.saving\.load_model"):
        keras_to_torch(path)
    unchecked = keras_to_torch(path, verify=False)
    assert unchecked.verified_against is None


def test_keras2_file_is_verified_against_the_model_tf_keras_loads(
    k2_model_file, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, path = k2_model_file
    assert "tf_keras.models.load_model" in keras_to_torch(path).verified_against
    corrupt_dense_copies(monkeypatch)
    with pytest.raises(ToleranceExceededError, match=r"tf_keras\.models\.load_model"):
        keras_to_torch(path)
    assert keras_to_torch(path, verify=False).verified_against is None


# Without TensorFlow: the reference reading is all there is, and the port says so; a
# corrupted copy still fails; and no torch warning about read-only arrays is printed.
WITHOUT_TENSORFLOW = textwrap.dedent(
    """
    import json, sys, warnings
    for blocked in ("tensorflow", "keras", "tf_keras"):
        sys.modules[blocked] = None
    import torch
    from xframe_bilstm import ToleranceExceededError, keras_to_torch
    from xframe_bilstm.models import torch_layers

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = keras_to_torch(sys.argv[1])
    result = {"against": module.verified_against,
              "warnings": [str(w.message) for w in caught]}
    original = torch_layers._tensor
    torch_layers._tensor = lambda array: original(array) + 0.5
    try:
        keras_to_torch(sys.argv[1])
    except ToleranceExceededError as error:
        result["corrupted"] = str(error)
    result["unchecked"] = keras_to_torch(sys.argv[1], verify=False).verified_against
    print(json.dumps(result))
    """
)


def test_without_keras_the_file_is_verified_against_the_reference(k3_model_file) -> None:
    _, path = k3_model_file
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TENSORFLOW, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["against"].startswith("the float64 reference reading of the file")
    assert "keras is not installed" in result["against"]
    assert "float64 reference reading" in result["corrupted"]
    assert result["unchecked"] is None
    assert not [w for w in result["warnings"] if "not writable" in w], result["warnings"]


@pytest.mark.parametrize("listed", [True, False])
def test_a_model_is_called_with_its_input_as_it_was_declared(listed: bool) -> None:
    """``Model(inputs=[x])`` takes a list of one and ``Model(inputs=x)`` a tensor: Keras warns
    on every call given the other structure."""
    import warnings

    x = keras.Input((None, 3))
    y = keras.layers.Dense(2)(keras.layers.LSTM(4, return_sequences=True)(x))
    model = keras.Model(inputs=[x] if listed else x, outputs=[y] if listed else y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keras_to_torch(model)  # verified against the model's own call
    assert not [w for w in caught if "structure of `inputs`" in str(w.message)]
