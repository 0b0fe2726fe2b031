"""The frameworks' own ONNX exporters on whole models, run on onnxruntime: the torch port of a
Keras model exported with ``torch.onnx.export`` (the ``torch-onnx`` columns of compare()), and
the model rebuilt in Keras exported with ``Model.export(format="onnx")`` (``keras-onnx``)."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, compare  # noqa: E402
from xframe_bilstm.frameworks import KerasOnnxFramework  # noqa: E402
from xframe_bilstm.frameworks.torch_onnx import export_graph_port  # noqa: E402
from xframe_bilstm.inputs import example_inputs  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402

pytestmark = [pytest.mark.onnx, pytest.mark.torch, pytest.mark.keras]

MODELS = ("tagger", "classifier", "masked-lstm")
HAS_TF2ONNX = importlib.util.find_spec("tf2onnx") is not None


def _tagger() -> Any:
    """Embedding(mask_zero) → Bidirectional(LSTM) returning sequences → Dense(softmax)."""
    ids = keras.Input((None,), dtype="int32", name="ids")
    h = keras.layers.Embedding(30, 5, mask_zero=True)(ids)
    h = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))(h)
    return keras.Model(ids, keras.layers.Dense(3, activation="softmax", name="tags")(h))


def _classifier() -> Any:
    """Embedding → GRU (last state) → Dense."""
    ids = keras.Input((None,), dtype="int32", name="tokens")
    h = keras.layers.GRU(4)(keras.layers.Embedding(30, 5)(ids))
    return keras.Model(ids, keras.layers.Dense(2, name="label")(h))


def _masked_lstm() -> Any:
    """Masking → LSTM (last state) → Dense, on float features."""
    x = keras.Input((None, 3), name="features")
    h = keras.layers.LSTM(4)(keras.layers.Masking(mask_value=-1.0)(x))
    return keras.Model(x, keras.layers.Dense(2, name="score")(h))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    """Each model saved as ``.keras``, with the live model that was saved."""
    folder = tmp_path_factory.mktemp("torch-onnx-graphs")
    saved = {}
    for seed, (name, build) in enumerate(
        [("tagger", _tagger), ("classifier", _classifier), ("masked-lstm", _masked_lstm)]
    ):
        keras.utils.set_random_seed(seed)
        model = build()
        path = folder / f"{name}.keras"
        model.save(path)
        saved[name] = (path, model)
    return saved


@pytest.mark.parametrize("name", MODELS)
def test_the_torchscript_export_of_a_whole_model_agrees_with_the_reference(
    models: dict[str, tuple[Path, Any]], name: str
) -> None:
    path, model = models[name]
    report = compare(str(path), frameworks=["torch", "torch-onnx"])
    assert report, report.failures
    assert [run.label for run in report.runs] == [
        "reference[cpu,float64]",
        "torch[cpu,float32]",
        "torch-onnx[cpu,float32]",
    ]
    labels = [pair.label for pair in report.pairs]
    assert "torch-onnx[cpu,float32] vs reference[cpu,float64]" in labels
    assert "torch-onnx[cpu,float32] vs torch[cpu,float32]" in labels
    settings = report.runs[2].settings
    assert settings["exporter"] == "torch.onnx.export(dynamo=False)"
    assert settings["inputs"] == model.inputs[0].name
    assert settings["dynamic_axes"] == "batch, time"
    assert settings["providers"] == "CPUExecutionProvider"


@pytest.mark.parametrize("name", MODELS)
def test_the_exported_port_runs_other_shapes_as_keras_does(
    models: dict[str, tuple[Path, Any]], name: str
) -> None:
    """Batch and time are dynamic: exported on (3, 7), run on rows of another batch and
    length, padded on the right and on the left, against the Keras model's own call."""
    path, model = models[name]
    graph = read_model(path)
    onnx_model, _ = export_graph_port(graph, example_inputs(graph), dynamo=False)
    assert [i.name for i in onnx_model.graph.input] == list(graph.inputs)
    assert [o.name for o in onnx_model.graph.output] == list(graph.outputs)
    session = onnxruntime.InferenceSession(
        onnx_model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    (x,) = example_inputs(graph, batch=4, steps=11, seed=3)
    x = x.astype(np.int64 if x.dtype.kind in "iu" else np.float32)
    (got,) = session.run(None, {graph.inputs[0]: x})
    expected = np.asarray(model(x))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.skipif(
    importlib.util.find_spec("onnxscript") is None,
    reason="torch.onnx.export(dynamo=True) needs onnxscript",
)
@pytest.mark.parametrize("name", MODELS)
def test_the_dynamo_export_of_a_whole_model_agrees_with_the_reference(
    models: dict[str, tuple[Path, Any]], name: str
) -> None:
    path, _ = models[name]
    report = compare(str(path), frameworks=["torch", "torch-onnx-dynamo"])
    assert report, report.failures
    run = report.runs[2]
    assert run.label == "torch-onnx-dynamo[cpu,float32]"
    assert run.settings["exporter"] == "torch.onnx.export(dynamo=True)"
    assert run.settings["dynamic_axes"] == "none (this input's shapes)"


@pytest.mark.skipif(
    importlib.util.find_spec("onnxscript") is None,
    reason="torch.onnx.export(dynamo=True) needs onnxscript",
)
def test_the_dynamo_exporter_runs_no_per_row_lengths_and_says_why() -> None:
    """torch.export cannot capture the packed sequences a stack's module runs lengths
    with: asked for, the column is refused by name; under "auto" it is left out, named."""
    from xframe_bilstm.factories import random_stack
    from xframe_bilstm.left_out import left_out

    stack = random_stack(np.random.default_rng(0), "lstm", 3, 4)
    assert compare(stack, frameworks=["torch-onnx-dynamo"], steps=5)  # no lengths: it runs
    with pytest.raises(UnsupportedFeatureError, match=r"torch-onnx-dynamo.*packed sequences"):
        compare(stack, frameworks=["torch-onnx-dynamo"], lengths=[5, 2, 1, 3], steps=5)
    assert "packed sequences" in left_out(stack, "auto", masked=True)["torch-onnx-dynamo"]
    assert "torch-onnx-dynamo" not in left_out(stack, "auto")


def _two_inputs() -> Any:
    """Embedding(tokens) and float features → Concatenate → Bidirectional(GRU) → Dense."""
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    features = keras.Input((None, 2), name="features")
    h = keras.layers.Concatenate()([keras.layers.Embedding(30, 3)(tokens), features])
    h = keras.layers.Bidirectional(keras.layers.GRU(3), merge_mode="ave")(h)
    return keras.Model([tokens, features], keras.layers.Dense(2, name="score")(h))


def _per_step() -> Any:
    """LSTM returning sequences → TimeDistributed(Dense), named ``per_step``."""
    x = keras.Input((None, 3), name="features")
    h = keras.layers.LSTM(4, return_sequences=True)(x)
    return keras.Model(x, keras.layers.TimeDistributed(keras.layers.Dense(2), name="per_step")(h))


def _saved(build: Any, folder: Path) -> Path:
    keras.utils.set_random_seed(7)
    path = folder / f"{build.__name__.strip('_')}.keras"
    build().save(path)
    return path


@pytest.mark.parametrize("name", [*MODELS, "two-inputs"])
def test_keras_export_of_a_whole_model_agrees_with_the_reference(
    models: dict[str, tuple[Path, Any]],
    name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without tf2onnx the column is left out of "auto"; asked for, its run fails naming it.
    monkeypatch.setattr(KerasOnnxFramework, "available", classmethod(lambda cls: True))
    path = _saved(_two_inputs, tmp_path) if name == "two-inputs" else models[name][0]
    report = compare(str(path), frameworks=["keras-onnx"])
    assert [run.label for run in report.runs] == [
        "reference[cpu,float64]",
        "keras-onnx[cpu,float32]",
    ]
    run = report.runs[1]
    if not HAS_TF2ONNX:
        assert run.error is not None
        assert run.error.startswith('ExportError: keras Model.export(format="onnx") raised')
        assert "tf2onnx" in run.error
        return
    assert report, report.failures
    assert [pair.label for pair in report.pairs] == [
        "keras-onnx[cpu,float32] vs reference[cpu,float64]"
    ]
    assert run.settings["exporter"] == 'keras Model.export(format="onnx")'
    assert run.settings["providers"] == "CPUExecutionProvider"


def test_keras_export_refuses_time_distributed_by_name(
    models: dict[str, tuple[Path, Any]], tmp_path: Path
) -> None:
    path = _saved(_per_step, tmp_path)
    with pytest.raises(
        UnsupportedFeatureError,
        match=r"\['keras-onnx'\] cannot run a whole model .*'per_step' \(TimeDistributed\)",
    ):
        compare(str(path), frameworks=["torch", "keras-onnx"])
    # What Keras cannot rebuild is refused beside it, each layer by name.
    graph = read_model(path)
    layers = tuple(
        replace(r, options={**r.options, "time_major": True}) if r.kind == "recurrent" else r
        for r in graph.layers
    )
    reason = KerasOnnxFramework().supports(replace(graph, layers=layers))
    assert reason is not None
    assert "time_major=True" in reason and "'per_step' (TimeDistributed)" in reason
    assert KerasOnnxFramework().supports(read_model(models["tagger"][0])) is None


@pytest.mark.skipif(not HAS_TF2ONNX, reason="Keras exports to ONNX through tf2onnx")
def test_keras_export_of_time_distributed_loses_the_time_axis(tmp_path: Path) -> None:
    """Why keras-onnx refuses TimeDistributed: the exported model's output has the batch
    size as its time axis. When this fails, the exporter is fixed and the refusal can go."""
    model = _per_step()
    x = np.random.default_rng(0).normal(size=(3, 6, 3)).astype(np.float32)
    model(x)
    path = tmp_path / "per_step.onnx"
    model.export(str(path), format="onnx", verbose=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    assert np.asarray(model(x)).shape == (3, 6, 2)
    assert got.shape != (3, 6, 2)
