"""Round trips Keras → torch → Keras of whole models, each against the Keras original.

The models are those of the whole-model tests (taggers and classifiers, a conv CRNN, the
normalization and pooling models, merges, activation layers, TimeDistributed), saved as
real Keras files; ``torch_to_keras(keras_to_torch(path))`` must compute what the original
model computes, by its own call. A port changed in torch (trained, loaded) converts back
with the weights it holds then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import (  # noqa: E402
    ToleranceExceededError,
    UnsupportedFeatureError,
    compare,
    keras_to_torch,
    torch_to_keras,
)
from xframe_bilstm.inputs import example_inputs  # noqa: E402
from xframe_bilstm.models import torch_readback  # noqa: E402
from xframe_bilstm.models.live import graph_from_keras  # noqa: E402
from xframe_bilstm.models.port import call_keras_model  # noqa: E402

from .. import normpool_models, saved_models  # noqa: E402
from ..models import test_port_convolution as convolution_models  # noqa: E402
from ..models import test_to_torch_shape_layers as shape_models  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def _saved_model(name: str) -> Any:
    if hasattr(saved_models, name):
        return getattr(saved_models, name)(keras)[0]
    if name in convolution_models.MODELS:
        return convolution_models._build(name)[0]
    if hasattr(normpool_models, name):
        return getattr(normpool_models, name)(keras)
    return shape_models.build(name)


MODELS = [
    "k3_classifier",  # Embedding(mask_zero) -> BiLSTM -> Dropout -> BiGRU -> Dense
    "k3_plain_layers",  # a masked tagger: go_backwards, SimpleRNN, TimeDistributed(Dense)
    "k3_functional",  # two inputs, two outputs, Masking, Concatenate, pooling
    "k3_fixed_length",  # Flatten, Reshape, Activation
    "crnn",  # Conv1D blocks -> BiLSTM -> Dense
    "image_rows",  # Conv2D -> Reshape -> LSTM
    "options",  # causal, padding, cropping, channels_first
    "sequence_model",  # BatchNormalization, LayerNormalization, pooling
    "image_model",
    "masked_model",
    "two_subtract",  # merges
    "masked_maximum",
    "half_masked_multiply",
    "activation_layers",  # ReLU, LeakyReLU, ELU, PReLU, Softmax
    "reshaping",  # TimeDistributed over Flatten/Reshape/Dense/PReLU, RepeatVector
]


def _inputs(model: Any) -> list[np.ndarray]:
    """Padded seeded inputs unlike the converters' own (another seed, batch and length)."""
    return example_inputs(graph_from_keras(model), batch=3, steps=9, seed=9)


@pytest.fixture(scope="module", params=MODELS)
def saved(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    model = _saved_model(request.param)
    path = tmp_path_factory.mktemp(request.param) / f"{request.param}.keras"
    model.save(path)
    return model, path


def test_a_port_converts_back_to_what_the_keras_model_computes(saved) -> None:
    model, path = saved
    port = keras_to_torch(path)
    back = torch_to_keras(port)
    assert isinstance(back, keras.Model) and back.name == model.name
    inputs = _inputs(model)
    for expected, actual in zip(call_keras_model(model, inputs), call_keras_model(back, inputs)):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-5)


def test_compare_reads_a_port_through_its_graph(saved) -> None:
    _, path = saved
    report = compare(keras_to_torch(path), frameworks=["reference", "torch", "keras"])
    assert report, report.text()
    labels = " ".join(report.lines())
    assert "@original" in labels and "keras[" in labels


def test_an_h5_file_and_a_keras2_file_convert_back(tmp_path: Path) -> None:
    model = shape_models.build("two_add")
    model.save(tmp_path / "two_add.h5")
    back = torch_to_keras(keras_to_torch(tmp_path / "two_add.h5"))
    inputs = _inputs(model)
    np.testing.assert_allclose(
        call_keras_model(back, inputs)[0], call_keras_model(model, inputs)[0], rtol=0, atol=2e-5
    )
    k2 = pytest.importorskip("tf_keras")
    old, old_inputs = saved_models.k2_classifier(k2)  # hard_sigmoid gates, reset_after=False
    old.save(tmp_path / "k2.h5")
    back = torch_to_keras(keras_to_torch(tmp_path / "k2.h5"))
    np.testing.assert_allclose(
        call_keras_model(back, old_inputs)[0],
        call_keras_model(old, old_inputs)[0],
        rtol=0,
        atol=2e-5,
    )


def _trained(port: Any, inputs: list[np.ndarray]) -> Any:
    """One optimizer step on every parameter, and new BatchNormalization statistics."""
    optimizer = torch.optim.SGD(port.parameters(), lr=0.3)
    tensors = [torch.as_tensor(x if x.dtype.kind == "i" else x.astype("float32")) for x in inputs]
    outputs = port(*tensors)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    sum(output.square().sum() for output in outputs).backward()
    optimizer.step()
    with torch.no_grad():
        for buffer in port.buffers():
            if buffer.is_floating_point():
                buffer.mul_(1.5).add_(0.1)
    return port.eval()


@pytest.mark.parametrize("name", ["crnn", "masked_model", "reshaping"])
def test_a_trained_port_converts_back_with_its_new_weights(name: str) -> None:
    model = _saved_model(name)
    inputs = _inputs(model)
    port = _trained(keras_to_torch(model), inputs)
    back = torch_to_keras(port)
    with torch.no_grad():
        tensors = [torch.as_tensor(x) for x in inputs]
        outputs = port(*tensors)
    expected = outputs if isinstance(outputs, tuple) else (outputs,)
    (actual,) = call_keras_model(back, inputs)
    np.testing.assert_allclose(actual, expected[0].numpy(), rtol=0, atol=5e-5)
    assert not np.allclose(actual, call_keras_model(model, inputs)[0], atol=1e-3)


def test_a_swapped_submodule_is_refused_by_name() -> None:
    model = _saved_model("crnn")
    port = keras_to_torch(model)
    port.conv_stride = torch.nn.Conv1d(6, 8, 3, stride=2)  # torch's own layout: not the port's
    with pytest.raises(UnsupportedFeatureError, match=r"'conv_stride' \(Conv1D.*Conv1d now"):
        torch_to_keras(port)
    port = keras_to_torch(model)
    port.bilstm = torch.nn.LSTM(8, 4, batch_first=True, bidirectional=True)
    with pytest.raises(UnsupportedFeatureError, match=r"'bilstm'.*LSTM now"):
        compare(port)


def test_a_wrong_reading_fails_the_check_against_the_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = keras_to_torch(_saved_model("sequence_model"))
    read = torch_readback._read_weights

    def nudged(*args: Any) -> dict[str, np.ndarray]:
        return {key: value + 0.25 for key, value in read(*args).items()}

    monkeypatch.setattr(torch_readback, "_read_weights", nudged)
    with pytest.raises(ToleranceExceededError, match="vs its Keras model"):
        torch_to_keras(port)
    assert torch_to_keras(port, verify=False).name == "sequence_normpool"


# --------------------------------------------------------------- states, attention, captures


def _states_model(name: str) -> Any:
    from ..models import test_port_states

    keras.utils.set_random_seed(1)
    model = test_port_states.MODELS[name](keras)
    saved_models.randomize(model, 2)
    return model


def _attention_model(name: str) -> Any:
    from .. import attention_models

    layers = keras.layers
    if name == "self_attention":
        return attention_models.self_attention_classifier(keras)
    if name == "multi_head":
        return attention_models.multi_head_classifier(keras)
    if name == "causal_mha_with_key":
        return attention_models.two_sequence_model(
            keras,
            lambda: layers.MultiHeadAttention(num_heads=2, key_dim=3, name="mha"),
            with_key=True,
            mha=True,
            causal=True,
        )
    return attention_models.two_sequence_model(
        keras, lambda: layers.AdditiveAttention(name="additive"), with_key=False, mha=False
    )


MORE_MODELS = {
    "states_bidirectional": lambda: _states_model("bidirectional"),
    "states_plain": lambda: _states_model("plain"),
    "self_attention": lambda: _attention_model("self_attention"),
    "multi_head": lambda: _attention_model("multi_head"),
    "causal_mha_with_key": lambda: _attention_model("causal_mha_with_key"),
    "additive_two_sequences": lambda: _attention_model("additive"),
}


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("name", sorted(MORE_MODELS))
def test_states_and_attention_models_convert_back(name: str, suffix: str, tmp_path: Path) -> None:
    model = MORE_MODELS[name]()
    path = tmp_path / f"{name}{suffix}"
    model.save(path)
    back = torch_to_keras(keras_to_torch(path))
    inputs = _inputs(model)
    expected = call_keras_model(model, inputs)
    actual = call_keras_model(back, inputs)
    assert len(actual) == len(expected) == len(model.outputs)
    for want, got in zip(expected, actual):
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


@pytest.mark.parametrize("name", ["multi_head", "states_bidirectional"])
def test_a_trained_attention_or_states_port_converts_back_with_its_new_weights(name: str) -> None:
    model = MORE_MODELS[name]()
    inputs = _inputs(model)
    port = _trained(keras_to_torch(model), inputs)
    back = torch_to_keras(port)
    with torch.no_grad():
        outputs = port(*[torch.as_tensor(x) for x in inputs])
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    for expected, actual in zip(outputs, call_keras_model(back, inputs)):
        scale = max(1.0, float(np.abs(expected.numpy()).max()))
        np.testing.assert_allclose(actual, expected.numpy(), rtol=0, atol=5e-5 * scale)
    assert not np.allclose(call_keras_model(back, inputs)[0], call_keras_model(model, inputs)[0])


def _captured(name: str) -> Any:
    from ..models import test_torch_capture

    return getattr(test_torch_capture, name)().eval()


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("name", ["LastStep", "Residual", "LanguageIdentifier"])
def test_a_captured_module_saved_in_keras_ports_back_and_forth(
    name: str, suffix: str, tmp_path: Path
) -> None:
    """torch module -> Keras (reduce, slice, scalar_op layers) -> file -> torch -> Keras."""
    from ..models.test_torch_capture import _input

    module = _captured(name)
    path = tmp_path / f"{name}{suffix}"
    torch_to_keras(module).save(path)
    port = keras_to_torch(path)
    assert "keras.saving.load_model" in port.verified_against
    kinds = {record.kind for record in port.keras_graph.layers}
    assert kinds & {"reduce", "slice", "scalar_op"}
    back = torch_to_keras(port)
    x = _input(module, batch=4, steps=11)
    with torch.no_grad():
        expected = module(torch.as_tensor(x)).numpy()
    for converted in (port, back):
        if converted is port:
            with torch.no_grad():
                actual = port(torch.as_tensor(x)).numpy()
        else:
            actual = call_keras_model(back, [x.astype("int32") if x.dtype.kind == "i" else x])[0]
        np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-5)
    report = compare(str(path))
    assert report, report.text()
    assert {"reference", "torch", "keras", "onnxruntime"} <= {
        run.spec.framework for run in report.runs
    }
