"""ONNX columns in compare(): onnxruntime on our export, and the exporters under test."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("keras")

from xframe_bilstm.adapters.onnx import initial_state_input_names  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.factories import random_stack  # noqa: E402
from xframe_bilstm.frameworks import (  # noqa: E402
    FRAMEWORKS,
    KerasOnnxFramework,
    RunSpec,
)
from xframe_bilstm.frameworks.onnx_session import _providers, export_error  # noqa: E402
from xframe_bilstm.runner import compare  # noqa: E402

pytestmark = [pytest.mark.onnx, pytest.mark.torch, pytest.mark.keras]

BATCH, STEPS = 3, 5
LENGTHS = [5, 2, 1]
HAS_TF2ONNX = importlib.util.find_spec("tf2onnx") is not None


def _stack(case: str):
    rng = np.random.default_rng(3)
    if case == "lstm-bidirectional-states":
        return random_stack(rng, "lstm", 3, 4, direction="bidirectional", return_state=True)
    if case == "gru-reset_after=False":
        return random_stack(rng, "gru", 3, 4, reset_after=False, num_layers=2)
    if case == "gru-backward":
        return random_stack(rng, "gru", 3, 4, direction="backward", return_state=True)
    return random_stack(rng, "lstm", 3, 4)  # "lstm-forward"


def _states(stack, seed: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal((BATCH, layer.units)) * 0.5
        for layer in stack.layers
        for _ in range(len(layer.weights) * layer.num_states)
    ]


def _explain(report) -> str:
    return "\n".join(report.lines() + [f"{r.label}: {r.error}" for r in report.runs if r.error])


CASES = [
    pytest.param("lstm-bidirectional-states", True, None, id="lstm-bidirectional-states"),
    pytest.param("gru-reset_after=False", False, None, id="gru-reset_after=False-2-layers"),
    pytest.param("gru-backward", True, LENGTHS, id="gru-backward-states-lengths"),
    pytest.param("lstm-forward", False, LENGTHS, id="lstm-forward-lengths"),
]


@pytest.mark.parametrize("framework", ["onnxruntime", "torch-onnx"])
@pytest.mark.parametrize(("case", "with_states", "lengths"), CASES)
def test_onnx_column_agrees_with_reference_and_torch(framework, case, with_states, lengths):
    stack = _stack(case)
    report = compare(
        stack,
        frameworks=[framework, "torch"],
        initial_states=_states(stack) if with_states else None,
        lengths=lengths,
        batch=BATCH,
        steps=STEPS,
    )
    assert report, _explain(report)
    assert [run.label for run in report.runs] == [
        "reference[cpu,float64]",
        f"{framework}[cpu,float32]",
        "torch[cpu,float32]",
    ]
    assert f"torch[cpu,float32] vs {framework}[cpu,float32]" in [p.label for p in report.pairs]
    settings = report.runs[1].settings
    assert settings["providers"] == "CPUExecutionProvider"
    assert settings["onnxruntime"] == onnxruntime.__version__
    assert isinstance(settings["opset"], int) and settings["opset"] >= 11
    if framework == "torch-onnx":
        expected = ["x", *(initial_state_input_names(stack) if with_states else ())]
        assert settings["inputs"] == ", ".join(expected + (["lengths"] if lengths else []))
        assert settings["exporter"] == "torch.onnx.export(dynamo=False)"
    else:
        assert settings["exporter"] == "xframe_bilstm canonical_to_onnx"


def test_auto_adds_the_installed_onnx_columns_and_pairs_them() -> None:
    stack = _stack("lstm-bidirectional-states")
    report = compare(stack, initial_states=_states(stack), batch=BATCH, steps=STEPS)
    assert report, _explain(report)
    frameworks = [run.spec.framework for run in report.runs]
    assert frameworks[:5] == ["reference", "torch", "keras", "onnxruntime", "torch-onnx"]
    assert ("keras-onnx" in frameworks) == HAS_TF2ONNX
    assert "torch-onnx[cpu,float32] vs onnxruntime[cpu,float32]" in [p.label for p in report.pairs]
    assert report.versions["onnxruntime"] == onnxruntime.__version__


def test_float16_graphs_run_on_onnxruntime() -> None:
    stack = _stack("gru-backward")
    report = compare(
        stack,
        frameworks=["onnxruntime", "torch-onnx"],
        dtypes=["float16"],
        lengths=LENGTHS,
        batch=BATCH,
        steps=STEPS,
    )
    assert report, _explain(report)
    assert [run.label for run in report.runs][1:] == [
        "onnxruntime[cpu,float16]",
        "torch-onnx[cpu,float16]",
    ]


def test_torch_onnx_exports_what_our_exporter_refuses() -> None:
    # ONNX recurrent nodes have no selu: our exporter refuses it (onnxruntime is left out,
    # or refused by name when asked for), while torch.onnx.export traces the explicit loop
    # the torch module runs it on.
    rng = np.random.default_rng(5)
    stack = random_stack(rng, "simple_rnn", 3, 4, activation="selu", recurrent_activation=None)
    with pytest.raises(UnsupportedFeatureError, match="'selu'"):
        compare(stack, frameworks=["onnxruntime", "torch-onnx"], batch=BATCH, steps=STEPS)
    report = compare(stack, frameworks=["torch-onnx"], batch=BATCH, steps=STEPS)
    assert [pair.label for pair in report.pairs] == [
        "torch-onnx[cpu,float32] vs reference[cpu,float64]"
    ]
    assert report.pairs[0]


def test_keras_onnx_runs_in_its_own_column_when_asked_for(monkeypatch) -> None:
    # The runner refuses frameworks whose available() is False; pretend it is installed to
    # see what its run does, as it would when asked for explicitly.
    monkeypatch.setattr(KerasOnnxFramework, "available", classmethod(lambda cls: True))
    stack = _stack("lstm-bidirectional-states")
    report = compare(
        stack,
        frameworks=["keras-onnx", "torch"],
        initial_states=_states(stack),
        lengths=LENGTHS,
        batch=BATCH,
        steps=STEPS,
    )
    keras_onnx = report.runs[1]
    assert keras_onnx.label == "keras-onnx[cpu,float32]"
    pairs = {pair.label: pair for pair in report.pairs}
    assert pairs["torch[cpu,float32] vs reference[cpu,float64]"]
    if HAS_TF2ONNX:
        assert report, _explain(report)
        assert keras_onnx.settings["keras_backend"] == "tensorflow"
    else:
        assert not report
        assert keras_onnx.error is not None
        assert keras_onnx.error.startswith('ExportError: keras Model.export(format="onnx") raised')
        assert "tf2onnx" in keras_onnx.error


def test_keras_onnx_is_left_out_of_auto_without_tf2onnx() -> None:
    assert KerasOnnxFramework.available() == HAS_TF2ONNX
    has_onnxscript = importlib.util.find_spec("onnxscript") is not None
    assert FRAMEWORKS["torch-onnx-dynamo"].available() == has_onnxscript


def test_available_imports_no_framework() -> None:
    code = (
        "import sys\n"
        "from xframe_bilstm.frameworks import FRAMEWORKS\n"
        "for framework in FRAMEWORKS.values():\n"
        "    framework.available()\n"
        "heavy = ('torch', 'tensorflow', 'keras', 'onnx', 'onnxruntime', 'tf2onnx')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == ""


def test_gpu_runs_ask_for_cuda_with_the_runs_tf32_setting() -> None:
    spec = RunSpec("onnxruntime", "gpu:1", "float32", tf32=False)
    assert _providers(spec) == [
        ("CUDAExecutionProvider", {"device_id": "1", "use_tf32": "0"}),
        "CPUExecutionProvider",
    ]
    assert _providers(RunSpec("onnxruntime", "cpu", "float32")) == ["CPUExecutionProvider"]


def test_export_errors_name_the_exporter_and_the_innermost_cause() -> None:
    try:
        try:
            raise ValueError("\x1b[96mdata-dependent\x1b[0m guard\nmore detail")
        except ValueError as cause:
            raise RuntimeError("Failed to export the model.\nNext steps: ...") from cause
    except RuntimeError as error:
        message = str(export_error("torch.onnx.export(dynamo=True)", error))
    assert message == (
        "torch.onnx.export(dynamo=True) raised RuntimeError, caused by ValueError: "
        "data-dependent guard"
    )


def test_an_activation_onnx_lacks_leaves_onnxruntime_out_or_is_refused_by_name() -> None:
    stack = random_stack(np.random.default_rng(0), "lstm", 3, 4, activation="gelu")
    report = compare(stack, frameworks="auto")
    assert bool(report), "\n".join(report.lines())
    assert not any(run.label.startswith("onnxruntime") for run in report.runs)
    assert any(line.startswith("LEFT OUT | onnxruntime: ") for line in report.lines())
    with pytest.raises(UnsupportedFeatureError, match=r"activation \['gelu'\] has no ONNX"):
        compare(stack, frameworks=["onnxruntime"])


def test_a_whole_model_runs_its_exports_on_inputs_padded_by_lengths() -> None:
    """The lengths pad a whole model's token ids; its masks come from them, so its exports
    take the model's inputs alone and agree with Keras's own run."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(9, 4, mask_zero=True),
            keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True)),
        ]
    )
    report = compare(model, frameworks=["onnxruntime", "torch-onnx"], lengths=LENGTHS, batch=BATCH)
    assert report, _explain(report)
    settings = {run.label: run.settings for run in report.runs}
    assert settings["onnxruntime[cpu,float32]"]["exporter"] == "xframe_bilstm graph_to_onnx"
    assert settings["torch-onnx[cpu,float32]"]["inputs"] != ""
