"""The command line, through main() and as real processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import keras_to_torch  # noqa: E402
from xframe_bilstm.cli import main  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--steps", "4", "--units", "3", "--input-size", "2", "--batch", "2"]


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="default-bilstm"),
        pytest.param(["compare", "--cell", "gru", "--direction", "backward"], id="gru-back"),
        pytest.param(
            ["--cell", "simple_rnn", "--merge-mode", "ave", "--layers", "2"], id="rnn-ave"
        ),
        pytest.param(["--dtypes", "float32,float64", "--frameworks", "torch"], id="dtypes"),
    ],
)
def test_main_reports_every_pair_passing(argv: list[str], capsys) -> None:
    assert main(argv + SMALL) == 0
    printed = capsys.readouterr().out
    assert ": equivalent" in printed
    assert "FAILED" not in printed
    assert "PASSED | torch[cpu,float32] vs reference[cpu,float64]" in printed


def test_report_files_are_written(tmp_path: Path, capsys) -> None:
    files = {kind: tmp_path / f"report.{kind}" for kind in ("json", "markdown", "junit", "plot")}
    argv = SMALL + [f"--{kind}={path}" for kind, path in files.items()]
    assert main(argv) == 0
    assert json.loads(files["json"].read_text())["passed"] is True
    assert files["markdown"].read_text().startswith("# keras")
    assert files["junit"].read_text().startswith("<testsuite")
    assert files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in files.values())


@pytest.fixture
def saved_models(tmp_path: Path):
    """A Keras Bidirectional LSTM file, its exact torch port and a port with GRU-style gates."""
    model = keras.Sequential(
        [
            keras.Input((None, 3)),
            keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True)),
        ]
    )
    keras_path = tmp_path / "model.keras"
    model.save(keras_path)
    good = keras_to_torch(model).rnns[0]
    torch.save(good.state_dict(), tmp_path / "good.pt")
    bad = {k: v.clone() for k, v in good.state_dict().items()}
    bad["weight_ih_l0"] = bad["weight_ih_l0"][[*range(4, 8), *range(0, 4), *range(8, 16)]]
    torch.save(bad, tmp_path / "bad.pt")
    return keras_path, tmp_path / "good.pt", tmp_path / "bad.pt"


def test_keras_file_against_a_correct_torch_port(saved_models, capsys) -> None:
    keras_path, good, _ = saved_models
    assert main(["--keras", str(keras_path), "--torch", str(good), "--steps", "5"]) == 0
    printed = capsys.readouterr().out
    assert "PASSED | torch[cpu,float32]@against vs reference" in printed
    # The file is named as a file, not as Python's str.
    first = printed.splitlines()[0]
    assert first.startswith(f"Keras file {keras_path} (lstm/bidirectional, units 4)")


@pytest.fixture
def last_step_models(tmp_path: Path):
    """A Keras LSTM that returns its last step, its nn.LSTM state_dict, and a bidirectional
    nn.LSTM state_dict of the same sizes."""
    layer = keras.layers.LSTM(4)
    model = keras.Sequential([keras.Input((None, 3)), layer])
    keras_path = tmp_path / "last.keras"
    model.save(keras_path)
    torch.save(keras_to_torch(layer).rnns[0].state_dict(), tmp_path / "port.pt")
    torch.save(torch.nn.LSTM(3, 4, bidirectional=True).state_dict(), tmp_path / "bi.pt")
    return keras_path, tmp_path / "port.pt", tmp_path / "bi.pt"


def test_a_last_step_model_against_a_sequence_port_is_matched(last_step_models, capsys):
    keras_path, port, _ = last_step_models
    assert main(["--keras", str(keras_path), "--torch", str(port), "--frameworks", "torch"]) == 0
    printed = capsys.readouterr().out
    assert "@against outputs matched by meaning: output ↔ output at each row's last" in printed
    assert "PASSED | torch[cpu,float32]@against vs reference[cpu,float64]" in printed


def test_a_refused_pair_is_one_line_with_exit_2(last_step_models, capsys) -> None:
    keras_path, _, bidirectional = last_step_models
    argv = ["--keras", str(keras_path), "--torch", str(bidirectional), "--frameworks", "torch"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    error = captured.err.strip()
    assert error.startswith("error: UnsupportedFeatureError: against: ") and "\n" not in error
    assert "output (4, 4)" in error and "output (4, 20, 8)" in error
    assert "Traceback" not in captured.err + captured.out


def test_on_a_terminal_pairs_are_one_table_of_80_columns(saved_models, monkeypatch, capsys):
    from xframe_bilstm.cli.output import print_report
    from xframe_bilstm.runner import compare

    keras_path, good, _ = saved_models
    report = compare(
        str(keras_path), against=str(good), frameworks=["torch"], paths=["mkldnn-off"], steps=4
    )
    monkeypatch.setenv("COLUMNS", "80")
    print_report(report, table=True)
    printed = capsys.readouterr().out
    assert max(len(line) for line in printed.splitlines()) <= 80, printed
    numbered = re.findall(r"^ *(\d+)  (\S+?)(?::|$)", printed, re.MULTILINE)
    assert numbered == [(str(i), run.label) for i, run in enumerate(report.runs, 1)]
    for run in report.runs:  # each run named once, then by its number
        assert len(re.findall(re.escape(run.label) + "(?!@)", printed)) == 1, run.label
    rows = [line.split() for line in printed.splitlines() if re.match(r" *\d+ vs \d+ ", line)]
    assert len(rows) == len(report.pairs) and all(row[3] == "PASSED" for row in rows)
    assert "PASSED |" not in printed  # no second list of the same pairs


def test_tensorflow_start_up_lines_are_kept_off_stderr() -> None:
    from xframe_bilstm.native_logs import is_noise

    def run(**environment: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
        return subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "compare.py"), *SMALL, "--frameworks", "keras"],
            capture_output=True,
            timeout=300,
            cwd=ROOT,
            env={**env, **environment},
        )

    quiet = run()
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert b"equivalent" in quiet.stdout
    assert not [line for line in quiet.stderr.splitlines() if is_noise(line)], quiet.stderr
    # The user's own setting wins: TensorFlow's lines come back.
    chosen = run(TF_CPP_MIN_LOG_LEVEL="0")
    assert chosen.returncode == 0
    assert [line for line in chosen.stderr.splitlines() if is_noise(line)], chosen.stderr


def test_keras_file_against_a_broken_torch_port(saved_models, capsys) -> None:
    keras_path, _, bad = saved_models
    assert main(["--keras", str(keras_path), "--torch", str(bad), "--steps", "5"]) == 1
    printed = capsys.readouterr().out
    assert "NOT equivalent" in printed
    assert "FAILED | torch[cpu,float32]@against vs reference" in printed


def test_torch_file_alone(saved_models, capsys) -> None:
    _, good, _ = saved_models
    assert main(["--torch", str(good), "--steps", "4"]) == 0
    assert "torch LSTM (lstm/bidirectional, units 4): equivalent" in capsys.readouterr().out


def _export_lstm(state_dict_path: Path) -> Path:
    """``torch.onnx.export`` of the bidirectional nn.LSTM a state_dict file holds."""
    lstm = torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True)
    lstm.load_state_dict(torch.load(state_dict_path))
    path = state_dict_path.with_suffix(".onnx")
    axes = {"x": {0: "batch", 1: "time"}}
    x = (torch.zeros(1, 5, 3),)
    torch.onnx.export(lstm, x, str(path), input_names=["x"], dynamic_axes=axes, dynamo=False)
    return path


def test_onnx_file_against_keras_and_alone(saved_models, capsys) -> None:
    keras_path, good, bad = saved_models
    argv = ["--keras", str(keras_path), "--steps", "5", "--frameworks", "torch"]
    assert main([*argv, "--onnx", str(_export_lstm(good))]) == 0
    assert "PASSED | onnxruntime[cpu,float32]@against vs reference" in capsys.readouterr().out
    assert main([*argv, "--onnx", str(_export_lstm(bad))]) == 1
    assert "FAILED | onnxruntime[cpu,float32]@against vs reference" in capsys.readouterr().out
    assert main(["--onnx", str(_export_lstm(good)), "--steps", "4"]) == 0
    assert "onnxruntime[cpu,float32]@original" in capsys.readouterr().out


def test_an_int8_onnx_file_with_a_quantization_budget(tmp_path: Path, capsys) -> None:
    pytest.importorskip("onnxruntime.quantization")
    from tests.quantized_models import int8_stack

    int8_stack(tmp_path)
    argv = ["--onnx", str(tmp_path / "stack8.onnx"), "--steps", "5", "--frameworks", "torch"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert (
        "PASSED | onnxruntime[cpu,int8]@original vs reference[cpu,float64] | quantization " in out
    )
    report_path = tmp_path / "report.json"
    assert main([*argv, "--quantization-budget", "1e-9", "--json", str(report_path)]) == 1
    out = capsys.readouterr().out
    assert "FAILED | onnxruntime[cpu,int8]@original vs reference" in out
    assert "over budget 1e-09" in out
    assert "PASSED | torch[cpu,float32] vs reference[cpu,float64]" in out
    assert json.loads(report_path.read_text())["quantization_budget"] == 1e-9


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--units", "0"], "expected a positive integer", id="units"),
        pytest.param(["--dtypes", "int8"], "'int8' is not one of", id="dtype"),
        pytest.param(["--rtol", "1e-3"], "give both --rtol and --atol", id="tolerances"),
        pytest.param(
            ["--torch-submodule", "lstm"], "--torch-submodule needs --torch", id="submodule"
        ),
        pytest.param(
            ["--keras", "a.keras", "--torch", "b.pt", "--onnx", "c.onnx"],
            "give at most two of --keras, --torch and --onnx",
            id="three-models",
        ),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_files_exit_2_with_one_line(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "missing.pt"
    assert main(["--torch", str(missing)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "missing.pt: no such file" in error and "\n" not in error


def test_unknown_framework_exits_2(capsys) -> None:
    assert main(["--frameworks", "caffe"]) == 2
    assert "frameworks: 'caffe'" in capsys.readouterr().err


def test_missing_framework_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from xframe_bilstm.cli import main\n"
        "sys.exit(main([]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        line
        for line in result.stderr.strip().splitlines()
        if "pip install 'xframe_bilstm[torch]'" in line
    ]
    assert "Traceback" not in result.stderr


def test_script_runs_as_a_process() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compare.py"), *SMALL],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "PASSED | keras[cpu,float32] vs torch[cpu,float32]" in result.stdout


def test_module_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "xframe_bilstm", "compare", *SMALL, "--frameworks", "torch"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert np is not None and ": equivalent" in result.stdout


def test_gradients_are_compared_on_request(saved_models, capsys) -> None:
    keras_path, good, _ = saved_models
    argv = ["--keras", str(keras_path), "--torch", str(good), "--steps", "5", "--gradients"]
    assert main([*argv, "--frameworks", "torch"]) == 0
    printed = capsys.readouterr().out
    assert "PASSED | gradients of torch[cpu,float32] vs reference[cpu,float64]" in printed
    assert "gradient tolerance: derived from" in printed
