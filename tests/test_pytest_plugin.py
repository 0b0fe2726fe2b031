"""Markers, options and the ini keys, seen from a project of tests that do nothing else,
run by pytest in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = textwrap.dedent(
    """
    import pytest


    def test_plain(xframe_frameworks):
        assert xframe_frameworks == ["torch"]


    @pytest.mark.slow
    def test_takes_long():
        pass


    @pytest.mark.gpu
    def test_on_a_gpu(xframe_devices):
        assert "gpu:0" in xframe_devices


    @pytest.mark.onnx
    def test_needs_onnx():
        pass
    """
)


def _pytest(directory: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", *options]
    return subprocess.run(
        [*command, "--rootdir", str(directory), "test_markers.py"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "test_markers.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\nxframe_frameworks = torch\n")
    return tmp_path


def test_slow_runs_when_asked_and_devices_select_the_gpu_tests(project) -> None:
    result = _pytest(project, "--xframe-slow", "--xframe-devices=cpu")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed, 2 skipped" in result.stdout  # test_plain, test_takes_long
    assert "no GPU selected by --xframe-devices=cpu" in result.stdout
    assert "onnx not selected by --xframe-frameworks=torch" in result.stdout  # from the ini


@pytest.mark.torch
def test_gpu_tests_follow_the_devices_torch_sees(project) -> None:
    torch = pytest.importorskip("torch")
    result = _pytest(project, "-m", "slow or gpu")
    if torch.cuda.device_count():
        assert "2 passed, 2 deselected" in result.stdout, result.stdout
    else:
        assert "1 passed, 1 skipped, 2 deselected" in result.stdout, result.stdout
        assert "needs a CUDA device; none is visible" in result.stdout


def test_an_unknown_kernel_path_is_a_usage_error(project) -> None:
    result = _pytest(project, "--xframe-paths=fast")
    assert result.returncode == 4
    assert "--xframe-paths: 'fast' is not all or one of: mkldnn-off" in result.stderr


def test_an_unknown_framework_is_a_usage_error(project) -> None:
    result = _pytest(project, "--xframe-frameworks=tensorflow")
    assert result.returncode == 4
    assert "--xframe-frameworks: 'tensorflow' is not one of: torch, keras" in result.stderr


def test_slow_tests_are_skipped_by_default_unless_the_project_has_its_own_marker(project) -> None:
    result = _pytest(project, "--xframe-devices=cpu")
    assert "slow: run with --xframe-slow or -m slow" in result.stdout, result.stdout
    (project / "pytest.ini").write_text(
        "[pytest]\nxframe_frameworks = torch\nmarkers =\n    slow: our own nightly tests\n"
    )
    result = _pytest(project, "--xframe-devices=cpu")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed, 2 skipped" in result.stdout  # test_takes_long runs: the project's policy
