"""Every converter path verifies what it built: a deliberately corrupted weight copy is caught.

Each test corrupts the conversion at the library's own building step: it wraps the function
the converter calls to build its result (the torch adapter's ``canonical_to_torch``, the
whole-model ``build_torch``, the Keras adapter's ``canonical_to_keras``, the ONNX exporter's
``canonical_to_onnx`` and interpreter's ``onnx_module``) so that one weight entry of what it
builds is off by :data:`NUDGE`. With ``verify=True`` the converter must raise
:class:`~xframe_bilstm.errors.ToleranceExceededError`; with ``verify=False`` it must return
the corrupted result, which computes something else than the source (checked against the
source's own framework, or onnxruntime on the source graph). Nothing of a framework is
replaced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import ToleranceExceededError, keras_to_torch, torch_to_keras  # noqa: E402
from xframe_bilstm.adapters import keras as keras_adapter  # noqa: E402
from xframe_bilstm.adapters import torch as torch_adapter  # noqa: E402
from xframe_bilstm.adapters.keras import graph as keras_graph  # noqa: E402
from xframe_bilstm.models import to_torch  # noqa: E402

from . import saved_models  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

# Far past any float32 rounding (tolerances here are about 1e-6), far below a gate's range.
NUDGE = 0.05
# A corrupted result must differ from its source by at least this much somewhere.
VISIBLE = 1e-4


def nudge_torch(module: Any) -> None:
    """Add NUDGE to the first entry of the module's first bias."""
    bias = next(p for n, p in module.named_parameters() if "bias" in n.split(".")[-1])
    with torch.no_grad():
        bias.view(-1)[0] += NUDGE


def nudge_keras(obj: Any) -> None:
    """Add NUDGE to the first entry of the layer's or model's first bias."""
    variable = next(v for v in obj.weights if "bias" in v.path.split("/")[-1])
    value = np.array(variable.numpy())
    value.flat[0] += NUDGE
    variable.assign(value)


def corrupting(build: Callable[..., Any], nudge: Callable[[Any], None], calls: list) -> Any:
    def corrupted(*args: Any, **kwargs: Any) -> Any:
        result = build(*args, **kwargs)
        nudge(result)
        calls.append(result)
        return result

    return corrupted


@pytest.fixture
def corrupt_torch_ports(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every torch module the Keras → torch converters build comes out nudged."""
    calls: list = []
    monkeypatch.setattr(
        torch_adapter,
        "canonical_to_torch",
        corrupting(torch_adapter.canonical_to_torch, nudge_torch, calls),
    )
    for build in ("build_torch", "build_torch_taking"):  # a file's port takes its arrays
        monkeypatch.setattr(
            to_torch, build, corrupting(getattr(to_torch, build), nudge_torch, calls)
        )
    return calls


@pytest.fixture
def corrupt_keras_ports(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every Keras layer the torch → Keras converters build comes out nudged."""
    calls: list = []
    nudged = corrupting(keras_adapter.canonical_to_keras, nudge_keras, calls)
    monkeypatch.setattr(keras_adapter, "canonical_to_keras", nudged)
    monkeypatch.setattr(keras_graph, "canonical_to_keras", nudged)  # whole models' layers
    return calls


def caught_then_returned(convert: Callable[..., Any], source: Any, calls: list) -> Any:
    """Assert ``convert`` refuses the corrupted result, then return it with verify off."""
    # A converter's own check states the difference; a compare()-based one lists the pairs.
    numbers = r"greatest absolute difference|FAILED \| .* max abs error"
    with pytest.raises(ToleranceExceededError, match=numbers):
        convert(source)
    assert calls, "the converter built its result without the wrapped building step"
    calls.clear()
    result = convert(source, verify=False)
    assert calls, "with verify=False the converter built its result elsewhere"
    return result


def assert_differs(expected: np.ndarray, actual: np.ndarray) -> None:
    assert expected.shape == actual.shape
    assert np.abs(np.asarray(actual, np.float64) - expected).max() > VISIBLE


def randomize(obj: Any, seed: int, scale: float = 0.6) -> None:
    rng = np.random.default_rng(seed)
    weights = obj.get_weights()
    obj.set_weights([(rng.standard_normal(w.shape) * scale).astype(w.dtype) for w in weights])


def features(seed: int, size: int, batch: int = 2, steps: int = 6) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, steps, size)).astype("float32")


def run_port(module: Any, x: np.ndarray) -> np.ndarray:
    tensor = torch.from_numpy(x).long() if x.dtype.kind == "i" else torch.from_numpy(x)
    with torch.no_grad():
        output = module(tensor)
    return (output[0] if isinstance(output, tuple) else output).numpy()


# ------------------------------------------------------------------------ Keras → torch


def test_keras_to_torch_of_one_layer_catches_a_corrupted_port(corrupt_torch_ports) -> None:
    layer = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))
    layer.build((None, None, 3))
    randomize(layer, 0)
    module = caught_then_returned(keras_to_torch, layer, corrupt_torch_ports)
    x = features(1, 3)
    assert_differs(np.asarray(layer(x)), run_port(module, x))


def test_keras_to_torch_of_a_sequential_stack_catches_a_corrupted_port(
    corrupt_torch_ports,
) -> None:
    model = keras.Sequential(
        [
            keras.Input((None, 3)),
            keras.layers.LSTM(4, return_sequences=True),
            keras.layers.GRU(3, return_sequences=True),
        ]
    )
    randomize(model, 1)
    module = caught_then_returned(keras_to_torch, model, corrupt_torch_ports)
    x = features(2, 3)
    assert_differs(np.asarray(model(x)), run_port(module, x))


def test_keras_to_torch_of_a_live_whole_model_catches_a_corrupted_port(
    corrupt_torch_ports,
) -> None:
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(saved_models.VOCABULARY, 5),
            keras.layers.LSTM(4),
            keras.layers.Dense(3),
        ]
    )
    randomize(model, 2)
    module = caught_then_returned(keras_to_torch, model, corrupt_torch_ports)
    ids = saved_models.token_batch(np.random.default_rng(3))
    assert_differs(np.asarray(model(ids)), run_port(module, ids))


def test_keras_to_torch_of_a_keras_file_catches_a_corrupted_port(
    tmp_path: Path, corrupt_torch_ports
) -> None:
    model, (ids,) = saved_models.k3_classifier(keras)
    path = tmp_path / "classifier.keras"
    model.save(path)
    module = caught_then_returned(keras_to_torch, path, corrupt_torch_ports)
    assert_differs(np.asarray(model(ids, training=False)), run_port(module, ids))


def test_keras_to_torch_of_a_keras2_h5_file_catches_a_corrupted_port(
    tmp_path: Path, corrupt_torch_ports
) -> None:
    tf_keras = pytest.importorskip("tf_keras")
    model, (ids,) = saved_models.k2_classifier(tf_keras)
    path = tmp_path / "classifier.h5"
    model.save(path)
    module = caught_then_returned(keras_to_torch, path, corrupt_torch_ports)
    assert_differs(np.asarray(model(ids, training=False)), run_port(module, ids))


# ------------------------------------------------------------------------ torch → Keras


def test_torch_to_keras_of_a_native_lstm_catches_a_corrupted_port(corrupt_keras_ports) -> None:
    torch.manual_seed(0)
    module = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    layer = caught_then_returned(torch_to_keras, module, corrupt_keras_ports)
    x = features(4, 3)
    assert_differs(run_port(module, x), np.asarray(layer(x)))


def test_torch_to_keras_of_a_sequential_catches_a_corrupted_port(corrupt_keras_ports) -> None:
    torch.manual_seed(1)
    module = torch.nn.Sequential(
        torch.nn.Embedding(saved_models.VOCABULARY, 5),
        torch.nn.GRU(5, 4, batch_first=True),
        torch.nn.Linear(4, 2),
    )
    model = caught_then_returned(torch_to_keras, module, corrupt_keras_ports)
    ids = saved_models.token_batch(np.random.default_rng(5))
    with torch.no_grad():
        embedded = module[0](torch.from_numpy(ids).long())
        expected = module[2](module[1](embedded)[0]).numpy()
    assert_differs(expected, np.asarray(model(ids)))


def test_torch_to_keras_of_a_state_dict_file_catches_a_corrupted_port(
    tmp_path: Path, corrupt_keras_ports
) -> None:
    torch.manual_seed(2)
    module = torch.nn.GRU(3, 4, bidirectional=True, batch_first=True)
    path = tmp_path / "gru.pt"
    torch.save(module.state_dict(), path)
    layer = caught_then_returned(torch_to_keras, str(path), corrupt_keras_ports)
    x = features(6, 3)
    assert_differs(run_port(module, x), np.asarray(layer(x)))


# ------------------------------------------------------------------------ ONNX


def nudge_onnx(model: Any) -> None:
    """Add NUDGE to the first entry of the graph's first float initializer of over 4 values."""
    from onnx import numpy_helper

    for initializer in model.graph.initializer:
        array = numpy_helper.to_array(initializer)
        if array.dtype == np.float32 and array.size > 4:
            array = array.copy()
            array.flat[0] += NUDGE
            initializer.CopyFrom(numpy_helper.from_array(array, initializer.name))
            return
    raise AssertionError("the graph has no float weights to nudge")


def nudged_stack(stack: Any) -> Any:
    """``stack`` with NUDGE added to the first entry of its first layer's input kernel (a
    canonical stack is frozen: the nudge makes a new one)."""
    layer = stack.layers[0]
    kernel = np.array(layer.weights[0].kernel, copy=True)
    kernel.flat[0] += NUDGE
    weights = (dataclasses.replace(layer.weights[0], kernel=kernel), *layer.weights[1:])
    layers = (dataclasses.replace(layer, weights=weights), *stack.layers[1:])
    return dataclasses.replace(stack, layers=layers)


def run_converted(path: str, result: Any, source: Any, graph: Any) -> tuple[Any, Any]:
    """(what the original computes, what the converter's result computes) on one input."""
    from xframe_bilstm.adapters.onnx import run_onnxruntime

    x = features(7, 3)
    if path == "to_onnx":
        return run_port(source, x), run_onnxruntime(result, x)[0]
    (expected,) = run_onnxruntime(graph, x)
    if path == "onnx_to_torch":
        return expected, run_port(result, x)
    if path == "onnx_to_canonical":
        from xframe_bilstm.reference import run_reference

        return expected, run_reference(result, x)[0]
    return expected, np.asarray(result(x))


@pytest.mark.onnx
@pytest.mark.parametrize("path", ["to_onnx", "onnx_to_torch", "onnx_to_keras", "onnx_to_canonical"])
def test_onnx_converters_catch_a_corrupted_result(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxruntime")
    from xframe_bilstm import onnx_converters
    from xframe_bilstm.adapters import onnx as onnx_adapter
    from xframe_bilstm.adapters.onnx import any_export

    torch.manual_seed(3)
    source = torch.nn.GRU(3, 4, batch_first=True)
    graph = onnx_converters.to_onnx(source, opset=14)
    calls: list = []
    seams: dict[str, tuple[Any, str, Callable[[Any], None], Any]] = {
        "to_onnx": (any_export, "canonical_to_onnx", nudge_onnx, source),
        "onnx_to_torch": (onnx_adapter, "onnx_module", nudge_torch, graph),
        "onnx_to_keras": (keras_adapter, "canonical_to_keras", nudge_keras, graph),
    }
    if path == "onnx_to_canonical":
        read = onnx_adapter.graph_to_canonical

        def misread(*args: Any, **kwargs: Any) -> Any:
            calls.append(True)
            return nudged_stack(read(*args, **kwargs))

        monkeypatch.setattr(onnx_adapter, "graph_to_canonical", misread)
        result = caught_then_returned(onnx_converters.onnx_to_canonical, graph, calls)
        assert_differs(*run_converted(path, result, source, graph))
        return
    seam, name, nudge, argument = seams[path]
    monkeypatch.setattr(seam, name, corrupting(getattr(seam, name), nudge, calls))
    result = caught_then_returned(getattr(onnx_converters, path), argument, calls)
    assert_differs(*run_converted(path, result, source, graph))
