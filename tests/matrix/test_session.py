"""A cell runs what the planner plans for it, less what the table excludes; a kernel path
or dtype that a framework of the cell does not offer fails the cell instead of passing it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from xframe_bilstm.frameworks import FRAMEWORKS
from xframe_bilstm.matrix import MatrixSession, lane_cells, load_table
from xframe_bilstm.matrix.results import CellResult

from .test_table import MINIMAL

torch = pytest.importorskip("torch")


def _run(table_text: str, tmp_path: Path, *, auto: bool = False) -> CellResult:
    table = load_table(table_text)
    (cell,), _ = lane_cells(table, "tiny", available=set(FRAMEWORKS))
    if auto:
        cell = replace(cell, devices=("auto",))
    session = MatrixSession(table, "tiny", baselines=tmp_path)
    session.prepare(cell.frameworks)
    return session.run(cell)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN kernels here")
@pytest.mark.parametrize("auto", [False, True])
def test_an_excluded_kernel_path_drops_that_run_only(tmp_path: Path, auto: bool) -> None:
    text = MINIMAL.replace('name = "one"', 'name = "one"\npaths = [["mkldnn-off"]]').replace(
        "[lanes.tiny]",
        '[[exclude]]\nframeworks = ["torch"]\npath = "mkldnn-off"\nmask = ["none"]\n'
        'reason = "a bug"\n[lanes.tiny]',
    )
    result = _run(text, tmp_path, auto=auto)
    assert result.passed, result.lines()
    assert [run["label"] for run in result.runs] == ["reference[cpu,float64]", "torch[cpu,float32]"]
    assert result.excluded == {"torch:mkldnn-off": "a bug"}
    assert result.devices == ("cpu",)


def test_a_kernel_path_no_framework_of_the_cell_offers_fails_it(tmp_path: Path) -> None:
    text = MINIMAL.replace('name = "one"', 'name = "one"\npaths = [["unroll"]]')  # Keras's
    result = _run(text, tmp_path)
    assert not result.passed and not result.runs
    (error,) = result.errors
    assert "paths: ['unroll'] not offered by ['torch']" in error


def test_a_dtype_one_framework_does_not_offer_fails_the_cell(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    text = MINIMAL.replace('frameworks = ["torch"]', 'frameworks = ["torch", "onnxruntime"]')
    result = _run(text.replace('dtype = ["float32"]', 'dtype = ["float64"]'), tmp_path)
    assert [run["label"] for run in result.runs] == ["reference[cpu,float64]", "torch[cpu,float64]"]
    assert not result.passed
    (error,) = result.errors
    assert error.endswith("onnxruntime did not run on cpu: it does not offer float64 there")
