"""Nothing lost: an interrupted write leaves the previous file, and no temporary files;
a framework that raises fails its own run and the comparison goes on."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from xframe_bilstm import atomic
from xframe_bilstm.atomic import write_atomically, write_with
from xframe_bilstm.factories import random_stack


class Interrupted(BaseException):
    """Stands for Ctrl-C or a kill arriving mid-write."""


def _only(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_interrupted_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    write_atomically(target, b'{"old": true}')

    def half_then_interrupted(stream) -> None:
        stream.write(b'{"new": ')
        raise Interrupted

    with pytest.raises(Interrupted):
        write_with(target, half_then_interrupted)
    assert target.read_bytes() == b'{"old": true}'
    assert _only(tmp_path) == ["report.json"]


def test_failing_rename_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "report.md"
    target.write_text("old")

    def no_space(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", no_space)
    with pytest.raises(OSError, match="No space"):
        write_atomically(target, "new")
    assert target.read_text() == "old"
    assert _only(tmp_path) == ["report.md"]


def test_permissions_are_kept_or_the_usual_ones(tmp_path: Path) -> None:
    kept = tmp_path / "kept.txt"
    kept.write_text("old")
    kept.chmod(0o640)
    write_atomically(kept, "new")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640
    fresh = tmp_path / "fresh.txt"
    write_atomically(fresh, "new")
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~mask


@pytest.mark.torch
def test_interrupted_cli_report_keeps_the_previous_report(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("torch")
    from xframe_bilstm import cli
    from xframe_bilstm.report import Report

    target = tmp_path / "report.json"
    argv = ["--frameworks", "torch", "--units", "2", "--input-size", "2", "--steps", "3"]
    assert cli.main([*argv, "--json", str(target)]) == 0
    previous = target.read_text()
    assert '"pairs"' in previous

    def interrupted(self: Report) -> str:
        raise Interrupted  # the report fails to render half-way through the output step

    monkeypatch.setattr(Report, "to_json", interrupted)
    with pytest.raises(Interrupted):
        cli.main([*argv, "--seed", "5", "--json", str(target)])
    assert target.read_text() == previous

    # The rename itself interrupted: the old report stays, no temporary file remains.
    monkeypatch.undo()

    def replace_then_die(source: str, destination: str) -> None:
        raise Interrupted

    monkeypatch.setattr(atomic.os, "replace", replace_then_die)
    with pytest.raises(Interrupted):
        cli.main([*argv, "--seed", "5", "--json", str(target), "--markdown", str(target) + ".md"])
    assert target.read_text() == previous
    assert _only(tmp_path) == ["report.json"]


@pytest.mark.onnx
def test_interrupted_onnx_export_keeps_the_previous_model(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("onnx")
    torch = pytest.importorskip("torch")
    from xframe_bilstm import to_onnx

    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous model")
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(Interrupted()))
    with pytest.raises(Interrupted):
        to_onnx(torch.nn.GRU(3, 2), target)
    assert target.read_bytes() == b"previous model"
    assert _only(tmp_path) == ["model.onnx"]
    monkeypatch.undo()
    to_onnx(torch.nn.GRU(3, 2), target)
    assert target.read_bytes() != b"previous model"


@pytest.mark.torch
def test_a_framework_that_raises_fails_its_own_run_and_the_rest_go_on(monkeypatch) -> None:
    pytest.importorskip("torch")
    from xframe_bilstm.frameworks import FRAMEWORKS
    from xframe_bilstm.runner import compare

    real_run = FRAMEWORKS["torch"].run

    def crash_in_float64(self, stack, x, spec, **kwargs):
        if spec.dtype == "float64":
            raise RuntimeError("CUDA error: an illegal memory access\nsecond line")
        return real_run(self, stack, x, spec, **kwargs)

    monkeypatch.setattr(FRAMEWORKS["torch"], "run", crash_in_float64)
    stack = random_stack(np.random.default_rng(0), "lstm", 3, 2)
    report = compare(stack, frameworks=["torch"], dtypes=["float32", "float64"], steps=3)
    errors = {run.label: run.error for run in report.runs}
    assert errors["torch[cpu,float64]"] == "RuntimeError: CUDA error: an illegal memory access"
    assert errors["torch[cpu,float32]"] is None
    assert [pair.label for pair in report.pairs] == ["torch[cpu,float32] vs reference[cpu,float64]"]
    assert report.pairs[0].passed
    assert not report  # the failed run fails the report
