"""Optimizer-parity cells: the layer each trains, their records, the ratchet and failures.

The drift and the failure are injected into a real report: one weight's Keras-PyTorch
divergence is set past the ratchet's limit (yet within the tolerance), or past the
tolerance, so the verdict is known exactly.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from xframe_bilstm.matrix import MatrixSession, lane_cells, load_table
from xframe_bilstm.matrix.training_cells import TrainingCell

pytest.importorskip("torch")
pytest.importorskip("keras")

TABLE = load_table()
CELLS = [c for c in lane_cells(TABLE, "default", available=set())[0] if isinstance(c, TrainingCell)]
RUNS = {"divergence[keras vs torch]", "rule error[keras]", "rule error[torch]"}


def _cell(cell: str, optimizer: str) -> TrainingCell:
    return next(c for c in CELLS if c.cell == cell and c.optimizer == optimizer)


def test_the_layer_is_seeded_built_and_has_a_bias_to_train() -> None:
    cell = _cell("gru", "adam")
    first, again = cell.keras_layer(), cell.keras_layer()
    for one, other in zip(first.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(one, other)
    forward, backward = first.forward_layer, first.backward_layer
    assert backward.go_backwards and forward.reset_after
    assert not np.array_equal(forward.get_weights()[0], backward.get_weights()[0])
    assert np.abs(forward.get_weights()[2]).min() > 0  # random, not Keras's zeros
    assert cell.config()["hyperparameters"] == {}
    assert _cell("lstm", "sgd-momentum").config()["hyperparameters"] == {"momentum": 0.9}


def test_a_training_cell_is_not_a_compare_cell() -> None:
    with pytest.raises(Exception, match="optimizer-parity cell: it runs optimizer_parity"):
        _cell("lstm", "adam").request()


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> MatrixSession:
    session = MatrixSession(TABLE, "default", baselines=tmp_path_factory.mktemp("baselines"))
    session.prepare(["keras", "torch"])
    return session


def test_a_cell_records_its_divergence_and_the_ratchet_trips_on_drift(
    session: MatrixSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    cell = _cell("lstm", "adam")
    clean = session.run(cell)
    assert clean.passed, clean.lines()
    assert set(clean.max_errors) == RUNS
    assert all(0 <= e < 1e-5 for e in clean.max_errors.values())
    assert all(run.endswith("]") and "[" in run for run in clean.max_errors)  # as baselines hold
    assert clean.to_dict()["config"]["kind"] == "optimizer-parity"
    session.baseline.record(cell.id, clean.max_errors)
    again = session.run(cell)
    assert again.passed and not again.drifts
    assert again.max_errors == pytest.approx(clean.max_errors, rel=0.5, abs=1e-9)

    report = TrainingCell.train(cell)
    widest = max(report.rows, key=lambda row: row.tolerance)
    baseline = session.baseline.cells[cell.id]["divergence[keras vs torch]"]
    limit = TABLE.ratchet * max(baseline, widest.tolerance / 10)
    assert limit < widest.tolerance, "no room between the ratchet and the tolerance"

    def moved(divergence: float):
        rows = tuple(
            replace(row, divergence=divergence) if row is widest else row for row in report.rows
        )
        return lambda self: replace(report, rows=rows)

    monkeypatch.setattr(TrainingCell, "train", moved(widest.tolerance))  # within tolerance
    drifted = session.run(cell)
    assert drifted.within_tolerance and not drifted.passed
    (drift,) = drifted.drifts
    assert (drift.cell, drift.run) == (cell.id, "divergence[keras vs torch]")
    assert drift.factor > TABLE.ratchet

    monkeypatch.setattr(TrainingCell, "train", moved(3 * widest.tolerance))  # past it
    failed = session.run(cell)
    assert not failed.within_tolerance
    (line,) = failed.errors
    assert line.startswith(f"FAILED | {cell.id} | {widest.name} after step {widest.step}")
    assert "Keras and PyTorch differ by" in line


def test_a_cell_that_raises_fails_alone_and_says_why(
    session: MatrixSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: TrainingCell) -> None:
        raise RuntimeError("optimizer exploded")

    monkeypatch.setattr(TrainingCell, "train", broken)
    cell = _cell("gru", "adam")
    result = session.run(cell)
    assert result.errors == [f"FAILED | {cell.id} | RuntimeError: optimizer exploded"]


def test_each_optimizer_of_the_lane_takes_the_same_steps_in_both_frameworks(
    session: MatrixSession,
) -> None:
    for optimizer in ("sgd-momentum", "adamw"):
        result = session.run(_cell("lstm", optimizer))
        assert result.passed, result.lines()
        assert result.runs[0]["framework"] == "keras+torch"
