"""Running one cell through :func:`~xframe_bilstm.compare`, judged against its baseline.

A :class:`MatrixSession` imports the lane's frameworks once (torch first), learns their
versions and loads the baseline for them; :meth:`MatrixSession.run` then runs one cell:
the runs compare()'s planner makes of it less the kernel paths the table excludes, every
pair compared with the tolerance derived for that model, and each run's error checked
against the ratchet. The Keras framework keeps one built layer per structure, so cells that
differ only in weights, input or mask reuse its compiled function.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .._imports import require
from ..comparison import NOISE_FACTOR
from ..errors import UnsupportedFeatureError
from ..frameworks import FRAMEWORKS, RunSpec
from ..planning import plan_runs
from ..report import Report
from ..runner import compare
from ..sources import read_source
from .protocol import Matrix, MatrixCell
from .ratchet import Baseline, load_baseline
from .results import CellResult, json_number
from .training_cells import TrainingCell, run_training_cell

REFERENCE = RunSpec("reference", "cpu", "float64")


class MatrixSession:
    """The lane's frameworks imported once, their versions, and the baseline for them."""

    def __init__(self, table: Matrix, lane: str, *, baselines: Path | None = None) -> None:
        self.table = table
        self.lane = table.lane(lane)
        self._baseline_directory = baselines
        self.import_seconds = 0.0
        self.versions: dict[str, str] = {}
        self.baseline = Baseline(self.lane.name, {}, table.ratchet)

    def prepare(self, frameworks: Iterable[str]) -> None:
        """Import ``frameworks`` (torch first, as TensorFlow needs) and load the baseline.

        The baseline is the one of every installed framework the lane may run, not only of
        ``frameworks``: each process of a run, whatever its share of cells, reads the same.
        """
        start = time.perf_counter()
        names = sorted(set(frameworks) | set(getattr(self.lane, "all_frameworks", ())))
        if FRAMEWORKS["torch"].available():
            # First, whatever the cells name: TensorFlow imported before it (by a framework
            # or by a user's factory) can crash it.
            require("torch")
        versions: dict[str, str] = {}
        for name in ["reference", *names]:
            framework = FRAMEWORKS[name]
            if framework.available():
                versions.update(framework().versions())
        self.import_seconds = time.perf_counter() - start
        self.versions = versions
        self.baseline = load_baseline(
            self.lane.name, versions, self.table.ratchet, self._baseline_directory
        )

    def run(self, cell: MatrixCell) -> CellResult:
        """Run one cell and judge it: tolerance first, then the ratchet."""
        if isinstance(cell, TrainingCell):
            return run_training_cell(cell, self.baseline)
        start = time.perf_counter()
        excluded = dict(cell.excluded)
        frameworks: tuple[str, ...] = cell.frameworks
        devices: tuple[str, ...] = cell.devices
        try:
            request = cell.request()
            excluded.update(request.excluded)
            frameworks = tuple(name for name in cell.frameworks if name not in excluded)
            if not frameworks and request.arguments.get("against") is None:
                reasons = "; ".join(f"{name}: {why}" for name, why in request.excluded)
                raise UnsupportedFeatureError(f"no framework of the cell can run it ({reasons})")
            planned = _planned(cell, request.source, frameworks, excluded)
            devices = tuple(sorted({s.device for s in planned}, key=_device_order)) or ("cpu",)
            paths: dict[str, Any] = {}  # only when asked: whole models take no paths
            if cell.paths:
                paths["paths"] = sorted({f"{s.framework}:{s.path}" for s in planned if s.path})
            report = compare(
                request.source,
                frameworks=list(frameworks),
                devices=list(devices),
                dtypes=[cell.dtype],
                tf32=cell.tf32,
                seed=cell.seed,
                **paths,
                **request.arguments,
            )
        except Exception as error:  # one cell's failure must not stop the lane
            message = f"{type(error).__name__}: {error}".splitlines()[0]
            return CellResult(
                cell,
                [f"FAILED | {cell.id} | {message}"],
                seconds=time.perf_counter() - start,
                frameworks=frameworks,
                devices=devices,
                excluded=excluded,
            )
        seconds = time.perf_counter() - start
        result = self._judge(cell, report, seconds, _not_offered(cell, frameworks, planned))
        result.frameworks, result.devices, result.excluded = frameworks, devices, excluded
        return result

    def _judge(
        self, cell: MatrixCell, report: Report, seconds: float, not_offered: list[str]
    ) -> CellResult:
        errors = [
            f"FAILED | {cell.id} | {line.removeprefix('FAILED | ')}"
            for line in [*report.failures, *not_offered]
        ]
        # Gradient pairs are ratcheted like the forward ones, under "gradients of <run>".
        against_reference = [
            (p.actual if p.kind != "gradients" else f"gradients of {p.actual}", p)
            for p in (*report.pairs, *report.gradient_pairs)
            if p.expected == REFERENCE.label
        ]
        max_errors = {run: p.max_abs_error for run, p in against_reference}
        floors = {run: p.tolerance / NOISE_FACTOR for run, p in against_reference}
        measured = {run: (max_errors[run], floors[run]) for run in max_errors}
        drifts = self.baseline.check(cell.id, measured) if not errors else []
        return CellResult(
            cell=cell,
            errors=errors,
            drifts=drifts,
            max_errors=max_errors,
            floors=floors,
            pairs=[
                {
                    "label": p.label,
                    "passed": p.passed,
                    "max_abs_error": json_number(p.max_abs_error),
                    "tolerance": p.tolerance,
                    "message": None if p.passed else p.comparison.message(),
                }
                for p in (*report.pairs, *report.gradient_pairs)
            ],
            runs=[
                {
                    "label": run.label,
                    "framework": run.spec.framework,
                    "device": run.spec.device,
                    "dtype": run.spec.dtype,
                    "path": run.spec.path or "default",
                    "kernel": run.kernel,
                    "seconds": run.seconds,
                    "error": run.error,
                }
                for run in report.runs
            ],
            baseline=self.baseline.cells.get(cell.id),
            seconds=seconds,
        )


def _planned(
    cell: MatrixCell, source: Any, frameworks: Sequence[str], excluded: dict[str, str]
) -> list[RunSpec]:
    """The runs compare() makes of the cell (:func:`~xframe_bilstm.planning.plan_runs`), the
    reference aside, less the kernel paths the matrix excludes (``"keras:unroll"``).

    A kernel path of the cell that no framework offers on its devices is refused."""
    read = read_source(source)
    devices = "auto" if cell.devices == ("auto",) else cell.devices
    plan = plan_runs(
        read.reading,
        frameworks,
        devices,
        [cell.dtype],
        cell.tf32,
        cell.paths,
        original=read.framework,
    )
    return [
        spec
        for spec, _ in plan
        if spec != REFERENCE and f"{spec.framework}:{spec.path}" not in excluded
    ]


def _not_offered(cell: MatrixCell, frameworks: Sequence[str], planned: list[RunSpec]) -> list[str]:
    """Each framework of the cell with no run on a device the cell names (on ``"auto"``, on
    any device): it does not offer the cell's dtype there, which fails the cell."""
    where = ("any device",) if cell.devices == ("auto",) else cell.devices
    return [
        f"{framework} did not run on {device}: it does not offer {cell.dtype} there"
        for framework in frameworks
        for device in where
        if not any(s.framework == framework and device in (s.device, "any device") for s in planned)
    ]


def _device_order(device: str) -> tuple[int, str]:
    return (device != "cpu", device)
