"""Baselines: the ratchet trips on an injected drift and passes otherwise.

The injected drift is built from the float64 reference itself: a run's outputs are moved
away from the reference by a chosen factor of their own error, so the error the ratchet
sees is known exactly, and stays under the tolerance that compare() derives.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from xframe_bilstm.comparison import NOISE_FACTOR
from xframe_bilstm.frameworks import FRAMEWORKS, RunSpec, TorchFramework
from xframe_bilstm.matrix import (
    Baseline,
    MatrixSession,
    cell_lengths,
    cell_stack,
    lane_cells,
    load_baseline,
    load_table,
    version_key,
)
from xframe_bilstm.matrix.ratchet import default_directory
from xframe_bilstm.reference import reference_gradients, run_reference

from .drift import past_the_ratchet, scaled_errors

TABLE = load_table()
TORCH_RUN = "torch[cpu,float32]"


def test_a_run_within_the_ratchet_passes_and_one_beyond_it_drifts() -> None:
    baseline = Baseline("lane", {}, 4.0, {"cell": {"run": 1e-7}})
    assert baseline.check("cell", {"run": (4e-7, 1e-8)}) == []
    (drift,) = baseline.check("cell", {"run": (4.1e-7, 1e-8)})
    assert (drift.cell, drift.run, drift.baseline) == ("cell", "run", 1e-7)
    assert drift.factor == pytest.approx(4.1)
    assert "DRIFT | cell | run: max error 4.1e-07 is 4.1x" in drift.describe()


def test_errors_below_the_reference_drift_never_count_as_drift() -> None:
    baseline = Baseline("lane", {}, 4.0, {"cell": {"run": 1e-12}})
    assert baseline.check("cell", {"run": (3e-8, 1e-8)}) == []  # 3x the floor: rounding
    (drift,) = baseline.check("cell", {"run": (5e-8, 1e-8)})
    assert drift.factor == pytest.approx(5.0)


def test_nan_drifts_and_unrecorded_cells_or_runs_are_not_judged() -> None:
    baseline = Baseline("lane", {}, 4.0, {"cell": {"run": 1e-7}})
    assert len(baseline.check("cell", {"run": (math.nan, 1e-8)})) == 1
    assert baseline.check("other", {"run": (1.0, 1e-8)}) == []
    assert baseline.check("cell", {"new run": (1.0, 1e-8)}) == []


def test_baselines_are_saved_per_lane_and_version_set(tmp_path: Path) -> None:
    versions = {"torch": "2.13.0+cpu", "python": "3.11.7", "numpy": "2.4.6"}
    baseline = load_baseline("lane", versions, 4.0, tmp_path)
    assert not baseline.found and baseline.cells == {}
    baseline.record("cell", {"b": 2e-7, "a": 1e-7, "broken": math.inf})
    path = baseline.save()
    assert path == tmp_path / "lane" / "torch-2.13.0+cpu.json"
    again = load_baseline("lane", {**versions, "python": "3.13.0"}, 4.0, tmp_path)
    assert again.found and again.cells == {"cell": {"a": 1e-7, "b": 2e-7}}
    assert not load_baseline("lane", {"torch": "2.14.0"}, 4.0, tmp_path).found
    assert json.loads(path.read_text())["versions"]["torch"] == "2.13.0+cpu"


def test_committed_baselines_name_only_cells_their_lane_has() -> None:
    every = set(FRAMEWORKS)
    for lane_dir in default_directory().iterdir():
        if not lane_dir.is_dir():
            continue
        ids = {cell.id for cell in lane_cells(TABLE, lane_dir.name, available=every)[0]}
        for path in lane_dir.glob("*.json"):
            data = json.loads(path.read_text())
            assert path.stem == version_key(data["versions"])
            stale = set(data["cells"]) - ids
            assert not stale, f"{path.name}: cells no longer in the lane: {sorted(stale)[:3]}"
            runs = {run for runs in data["cells"].values() for run in runs}
            assert all(run.endswith("]") and "[" in run for run in runs)


# --------------------------------------------------------------------------- with torch


def _cells(count: int = 4):
    cells, _ = lane_cells(TABLE, "default", available=set(FRAMEWORKS))
    chosen = [c for c in cells if c.block == "layouts" and c.returns == "sequences+state"]
    return [replace(cell, frameworks=("torch",)) for cell in chosen[:count]]


@pytest.fixture(scope="module")
def torch_session(tmp_path_factory: pytest.TempPathFactory) -> MatrixSession:
    pytest.importorskip("torch")
    session = MatrixSession(TABLE, "default", baselines=tmp_path_factory.mktemp("baselines"))
    session.prepare(["torch"])
    return session


def test_the_ratchet_trips_on_an_injected_drift_and_passes_otherwise(
    torch_session: MatrixSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    cells = _cells()
    clean = [torch_session.run(cell) for cell in cells]
    assert all(result.passed for result in clean), [r.lines() for r in clean]
    for result in clean:
        torch_session.baseline.record(result.cell.id, result.max_errors)

    again = [torch_session.run(cell) for cell in cells]
    assert all(result.passed and not result.drifts for result in again)
    assert [r.max_errors for r in again] == [r.max_errors for r in clean]

    tripped = 0
    for cell, before in zip(cells, clean):
        drifted: list[float] = []
        monkeypatch.setattr(TorchFramework, "run", past_the_ratchet(TABLE.ratchet, drifted))
        result = torch_session.run(cell)
        if not drifted:  # torch's error already near the tolerance: no room to drift in
            continue
        assert result.within_tolerance, result.lines()  # the tolerance alone passes it
        assert not result.passed
        tripped += 1
        (drift,) = result.drifts
        assert (drift.cell, drift.run) == (cell.id, TORCH_RUN)
        assert drift.error == pytest.approx(drifted[0], rel=1e-6)
        assert drift.baseline == before.max_errors[TORCH_RUN]
        assert drift.factor > TABLE.ratchet
        assert drift.factor == pytest.approx(
            drifted[0] / max(drift.baseline, drift.floor), rel=1e-6
        )

        monkeypatch.setattr(TorchFramework, "run", scaled_errors(1.5))  # within the ratchet
        assert torch_session.run(cell).passed
    assert tripped, "no cell left room between the ratchet and the tolerance"


def test_the_injected_outputs_come_from_the_reference() -> None:
    """The drift helper itself: factor 0 returns the float64 reference exactly."""
    pytest.importorskip("torch")
    cell = _cells(1)[0]
    stack = cell_stack(cell)
    x = np.random.default_rng(0).standard_normal((cell.batch, cell.steps, cell.input_size))
    lengths = np.asarray(cell_lengths(cell))
    spec = RunSpec("torch", "cpu", "float32")
    outputs, _ = scaled_errors(0.0)(
        TorchFramework(), stack, x, spec, initial_states=None, lengths=lengths
    )
    for got, want in zip(outputs, run_reference(stack, x, lengths=lengths)):
        assert np.array_equal(got, want)


def test_the_ratchet_trips_on_a_drift_of_the_backward_pass_alone(
    torch_session: MatrixSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gradient cell records each gradient pair's error as ``gradients of <run>``; torch's
    gradients moved from the float64 ones (its outputs untouched) drift past the ratchet."""
    cells, _ = lane_cells(TABLE, "default", available=set(FRAMEWORKS))
    cell = next(
        c for c in cells if getattr(c, "gradients", False) and c.cell == "gru" and c.reset_after
    )
    cell = replace(cell, frameworks=("torch",))
    clean = torch_session.run(cell)
    assert clean.passed, clean.lines()
    run = f"gradients of {TORCH_RUN}"
    assert set(clean.max_errors) == {TORCH_RUN, run}
    torch_session.baseline.record(cell.id, clean.max_errors)
    error, floor = clean.max_errors[run], clean.floors[run]
    limit = TABLE.ratchet * max(error, floor)
    tolerance = floor * NOISE_FACTOR
    assert limit * 1.2 < tolerance, "no room between the ratchet and the tolerance"
    factor = math.sqrt(limit * tolerance) / error
    real = TorchFramework.gradients

    def drifted(self, stack, x, spec, cotangents, *, initial_states, lengths):
        got = real(self, stack, x, spec, cotangents, initial_states=initial_states, lengths=lengths)
        exact = reference_gradients(
            stack, x, cotangents, dtype=np.float64, initial_states=initial_states, lengths=lengths
        ).named()
        moved = {name: exact[name] + factor * (a - exact[name]) for name, a in got.arrays.items()}
        return replace(got, arrays=moved)

    monkeypatch.setattr(TorchFramework, "gradients", drifted)
    result = torch_session.run(cell)
    assert result.within_tolerance, result.lines()
    (drift,) = result.drifts
    assert (drift.run, drift.baseline) == (run, error)
    assert drift.factor == pytest.approx(math.sqrt(limit * tolerance) / max(error, floor), rel=0.05)
    assert result.max_errors[TORCH_RUN] == clean.max_errors[TORCH_RUN]  # the forward pass held
