"""compare(), the CLI's --keras and --lint, and sources on model files and whole models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import compare  # noqa: E402
from xframe_bilstm.adapters.keras import keras_to_canonical  # noqa: E402
from xframe_bilstm.cli import main  # noqa: E402
from xframe_bilstm.sources import framework_of, to_canonical  # noqa: E402

from .. import saved_models  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def test_compare_runs_a_whole_model_file_on_the_reference_and_torch(saved_cases) -> None:
    report = compare(saved_cases["k3-functional.keras"], frameworks=["torch"])
    assert bool(report)
    assert [run.label for run in report.runs] == ["reference[cpu,float64]", "torch[cpu,float32]"]


def test_compare_runs_a_live_whole_model_in_keras_too() -> None:
    model, _ = saved_models.k3_classifier(keras)
    report = compare(model)
    assert bool(report)
    # onnxruntime runs our ONNX export of the whole model, torch-onnx PyTorch's of the port.
    expected = {"reference", "torch", "onnxruntime", "torch-onnx", "keras"}
    assert {run.spec.framework for run in report.runs} - {"torch-onnx-dynamo"} == expected


def test_a_recurrent_stack_file_is_canonical(tmp_path: Path) -> None:
    model = keras.Sequential(
        [keras.Input((None, 3)), keras.layers.Bidirectional(keras.layers.GRU(4))]
    )
    path = tmp_path / "stack.h5"
    model.save(path)
    assert framework_of(str(path)) == "canonical"
    assert to_canonical(path) == keras_to_canonical(model)
    assert bool(compare(str(path), frameworks=["torch"], steps=5))


def test_cli_lint_lists_the_traps(saved_cases, capsys) -> None:
    assert main(["--keras", str(saved_cases["k2-classifier.h5"]), "--lint"]) == 0
    printed = capsys.readouterr().out
    assert "bidi (Bidirectional): hard_sigmoid:" in printed
    assert "[explicit loop]" in printed


def test_cli_lint_needs_a_keras_file(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--lint"])
    assert exited.value.code == 2


def test_cli_compares_a_keras_2_file_without_tensorflow(saved_cases) -> None:
    code = (
        "import sys\n"
        "for name in ('tensorflow', 'keras', 'tf_keras'):\n"
        "    sys.modules[name] = None\n"
        "from xframe_bilstm.cli import main\n"
        f"sys.exit(main(['--keras', {str(saved_cases['k2-classifier.h5'])!r}, "
        "'--frameworks', 'torch']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert ": equivalent" in result.stdout


def test_compare_finds_a_wrong_port(saved_cases) -> None:
    from xframe_bilstm import keras_to_torch

    path = saved_cases["k3-classifier.keras"]
    wrong = keras_to_torch(path)
    (dense,) = [m for m in wrong.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        dense.bias[0] += 0.5  # one class only: softmax ignores a shift of all logits
    report = compare(path, against=wrong, frameworks=["torch"])
    assert not bool(report)
    verdicts = {pair.label: bool(pair) for pair in report.pairs}
    # The port agrees with the reference; the wrong port agrees with neither.
    assert verdicts == {
        "torch[cpu,float32] vs reference[cpu,float64]": True,
        "torch[cpu,float32]@against vs reference[cpu,float64]": False,
        "torch[cpu,float32]@against vs torch[cpu,float32]": False,
    }


def test_cli_diagnoses_a_whole_model_file_against_its_port(saved_cases, capsys) -> None:
    path = str(saved_cases["k3-classifier.keras"])
    assert main(["--keras", path, "--frameworks", "torch", "--diagnose"]) == 0
    assert "diagnosis: equivalent" in capsys.readouterr().out


def test_assert_equivalent_names_the_layer_a_wrong_port_of_a_whole_model_breaks(
    saved_cases,
) -> None:
    from xframe_bilstm import keras_to_torch
    from xframe_bilstm.testing import assert_equivalent

    path = saved_cases["k3-classifier.keras"]
    wrong = keras_to_torch(path)
    (dense,) = [m for m in wrong.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        dense.bias[0] += 0.5
    with pytest.raises(AssertionError, match="diagnosis: weights_differ") as failed:
        assert_equivalent(path, wrong, frameworks=["torch"])
    assert "Dense" in str(failed.value)
