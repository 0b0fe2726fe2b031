"""Kernel paths: each framework's alternative kernels as recorded runs of compare()."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.cli import main  # noqa: E402
from xframe_bilstm.factories import random_stack  # noqa: E402
from xframe_bilstm.frameworks import KerasFramework, RunSpec, TorchFramework  # noqa: E402
from xframe_bilstm.frameworks import process as child_processes  # noqa: E402
from xframe_bilstm.reference import run_reference  # noqa: E402
from xframe_bilstm.runner import compare  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

needs_mkldnn = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN"
)


def _stack(cell: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    return random_stack(rng, cell, 5, 6, num_layers=2, direction="bidirectional")


@needs_mkldnn
def test_torch_records_the_kernel_the_dispatcher_ran() -> None:
    x = np.random.default_rng(1).standard_normal((3, 9, 5))
    framework = TorchFramework()
    kernels = {}
    for cell in ("lstm", "gru"):
        for path in ("", "mkldnn-off"):
            spec = RunSpec("torch", "cpu", "float32", path=path)
            outputs, settings = framework.run(
                _stack(cell), x, spec, initial_states=None, lengths=None
            )
            kernels[cell, path] = settings["kernel"]
            assert settings["mkldnn.enabled"] is (path == "")
            np.testing.assert_allclose(outputs[0], run_reference(_stack(cell), x)[0], atol=1e-5)
    # oneDNN serves LSTMs only; switched off, the LSTM falls back to ATen's loop like a GRU.
    assert kernels["lstm", ""] == "oneDNN (mkldnn) LSTM"
    assert kernels["lstm", "mkldnn-off"].startswith("ATen loop")
    assert kernels["gru", ""].startswith("ATen loop")
    assert torch.backends.mkldnn.enabled, "the run must put the switch back"


@needs_mkldnn
def test_packed_sequences_never_take_the_onednn_kernel() -> None:
    x = np.random.default_rng(2).standard_normal((3, 9, 5))
    spec = RunSpec("torch", "cpu", "float32")
    _, settings = TorchFramework().run(
        _stack("lstm"), x, spec, initial_states=None, lengths=np.array([9, 4, 1])
    )
    assert settings["kernel"].startswith("ATen loop")


def test_keras_onednn_switch_runs_in_a_process_started_with_it() -> None:
    x = np.random.default_rng(3).standard_normal((2, 6, 5))
    framework = KerasFramework()
    stack = _stack("gru")
    here = framework.run(
        stack, x, RunSpec("keras", "cpu", "float32"), initial_states=None, lengths=None
    )
    mine = here[1]["oneDNN"]
    other = "onednn-off" if mine else "onednn-on"
    outputs, settings = framework.run(
        stack, x, RunSpec("keras", "cpu", "float32", path=other), initial_states=None, lengths=None
    )
    assert settings["oneDNN"] is (not mine)
    assert settings["process"].startswith("separate")
    np.testing.assert_allclose(outputs[0], run_reference(stack, x)[0], atol=1e-5)
    # The same setting again reuses the process instead of importing TensorFlow anew.
    started = len(child_processes._CHILDREN)
    framework.run(
        _stack("lstm"),
        x,
        RunSpec("keras", "cpu", "float32", path=other),
        initial_states=None,
        lengths=None,
    )
    assert len(child_processes._CHILDREN) == started
    # This process's own setting runs here.
    same = "onednn-on" if mine else "onednn-off"
    _, settings = framework.run(
        stack, x, RunSpec("keras", "cpu", "float32", path=same), initial_states=None, lengths=None
    )
    assert "process" not in settings


def test_a_failure_in_the_other_process_fails_that_run_only() -> None:
    x = np.random.default_rng(3).standard_normal((2, 6, 5))
    here = KerasFramework().run(
        _stack("lstm"), x, RunSpec("keras", "cpu", "float32"), initial_states=None, lengths=None
    )
    other = "onednn-off" if here[1]["oneDNN"] else "onednn-on"
    with pytest.raises(child_processes.ProcessRunError, match="float8"):
        KerasFramework().run(
            _stack("lstm"),
            x,
            RunSpec("keras", "cpu", "float8", path=other),
            initial_states=None,
            lengths=None,
        )


def test_compare_runs_every_path_asked_for_and_compares_them_with_each_other() -> None:
    stack = _stack("lstm")
    report = compare(stack, frameworks=["torch", "keras"], paths="all", steps=6, batch=2)
    assert report, "\n".join(report.lines())
    labels = [run.label for run in report.runs]
    assert "keras[cpu,float32,unroll]" in labels
    assert "keras[cpu,float32,onednn-off]" in labels and "keras[cpu,float32,onednn-on]" in labels
    if torch.backends.mkldnn.is_available():
        assert "torch[cpu,float32,mkldnn-off]" in labels
        pairs = {pair.label for pair in report.pairs}
        assert "torch[cpu,float32,mkldnn-off] vs torch[cpu,float32]" in pairs
    record = json.loads(report.to_json())
    unrolled = next(run for run in record["runs"] if run["label"] == "keras[cpu,float32,unroll]")
    assert unrolled["path"] == "unroll" and "unrolled" in unrolled["kernel"]
    assert unrolled["settings"]["unroll"] is True


def test_paths_are_checked_before_anything_runs() -> None:
    stack = _stack("lstm")
    with pytest.raises(ValueError, match="not a kernel path"):
        compare(stack, frameworks=["torch"], paths=["mkldnn-of"])
    with pytest.raises(ValueError, match="names no framework"):
        compare(stack, frameworks=["torch"], paths=["pytorch:mkldnn-off"])
    with pytest.raises(UnsupportedFeatureError, match="torch:unroll"):
        compare(stack, frameworks=["torch", "keras"], paths=["torch:unroll"])
    with pytest.raises(UnsupportedFeatureError, match="unroll"):
        compare(stack, frameworks=["torch"], paths=["unroll"])
    if not torch.cuda.is_available():
        with pytest.raises(UnsupportedFeatureError, match="cudnn-off"):
            compare(stack, frameworks=["torch", "keras"], paths=["cudnn-off"])


def test_cli_runs_a_path_and_says_which_kernel_ran(capsys) -> None:
    code = main(["--frameworks", "keras", "--paths", "unroll", "--steps", "4", "--units", "3"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "keras[cpu,float32,unroll]: oneDNN " in out and "unrolled" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["--paths", "fast"])
    assert exit_info.value.code == 2
    assert "'fast' is not one of" in capsys.readouterr().err


def test_a_path_qualified_by_a_framework_runs_on_that_framework_only() -> None:
    report = compare(
        _stack("gru"), frameworks=["torch", "keras"], paths=["keras:unroll"], steps=4, batch=2
    )
    assert [run.label for run in report.runs] == [
        "reference[cpu,float64]",
        "torch[cpu,float32]",
        "keras[cpu,float32]",
        "keras[cpu,float32,unroll]",
    ]


def test_a_dead_process_is_started_again_for_the_next_run() -> None:
    x = np.random.default_rng(4).standard_normal((2, 5, 5))
    framework = KerasFramework()
    here = framework.run(
        _stack("lstm"), x, RunSpec("keras", "cpu", "float32"), initial_states=None, lengths=None
    )
    other = RunSpec(
        "keras", "cpu", "float32", path="onednn-off" if here[1]["oneDNN"] else "onednn-on"
    )
    framework.run(_stack("lstm"), x, other, initial_states=None, lengths=None)
    # The oneDNN child (the Keras backend columns keep children of their own).
    (key,) = [k for k in child_processes._CHILDREN if dict(k).keys() == {"TF_ENABLE_ONEDNN_OPTS"}]
    child = child_processes._CHILDREN[key]
    child.process.kill()
    child.process.wait()
    outputs, settings = framework.run(_stack("lstm"), x, other, initial_states=None, lengths=None)
    assert settings["process"].startswith("separate")
    np.testing.assert_allclose(outputs[0], run_reference(_stack("lstm"), x)[0], atol=1e-5)
    assert child_processes._CHILDREN[key] is not child
