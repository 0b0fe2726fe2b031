"""Running cells: each through :func:`~xframe_bilstm.compare`, judged against its baseline.

A :class:`MatrixSession` imports the lane's frameworks once (torch first), learns their
versions and loads the baseline for them; :meth:`MatrixSession.run` then runs one cell:
the reference once, every framework and device of the cell, every pair compared with the
tolerance derived for that model, and each run's error checked against the ratchet. The
Keras framework keeps one built layer per structure, so cells that differ only in weights,
input or mask reuse its compiled function.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._imports import require
from ..comparison import NOISE_FACTOR
from ..frameworks import FRAMEWORKS, RunSpec
from ..report import Report
from .cells import Cell
from .models import cell_lengths, cell_stack
from .ratchet import Baseline, Drift, load_baseline
from .table import Table

REFERENCE = RunSpec("reference", "cpu", "float64")


@dataclass
class CellResult:
    """What one cell measured, and its verdict.

    ``errors`` are runs that failed, pairs beyond tolerance and planned runs that did not
    happen; ``drifts`` are runs past the baseline ratchet. ``max_errors`` and ``floors``
    hold, per run, the max error against the reference and the reference's own drift.
    """

    cell: Cell
    errors: list[str]
    drifts: list[Drift] = field(default_factory=list)
    max_errors: dict[str, float] = field(default_factory=dict)
    floors: dict[str, float] = field(default_factory=dict)
    pairs: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    baseline: dict[str, float] | None = None
    seconds: float = 0.0

    @property
    def within_tolerance(self) -> bool:
        return not self.errors

    @property
    def passed(self) -> bool:
        return not self.errors and not self.drifts

    @property
    def framework_seconds(self) -> float:
        """Time spent inside the frameworks' own runs (converting, compiling, running)."""
        return sum(run["seconds"] for run in self.runs if run["framework"] != "reference")

    def lines(self) -> list[str]:
        """The ``FAILED | …`` and ``DRIFT | …`` lines of this cell."""
        return self.errors + [drift.describe() for drift in self.drifts]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.cell.id,
            "lane": self.cell.lane,
            "passed": self.passed,
            "config": self.cell.config(),
            "frameworks": list(self.cell.frameworks),
            "devices": list(self.cell.devices),
            "excluded": dict(self.cell.excluded),
            "errors": self.errors,
            "drift": [
                {
                    "run": d.run,
                    "error": _plain(d.error),
                    "baseline": d.baseline,
                    "floor": d.floor,
                    "factor": _plain(d.factor),
                    "ratchet": d.ratchet,
                }
                for d in self.drifts
            ],
            "max_errors": {run: _plain(e) for run, e in self.max_errors.items()},
            "reference_drift": {run: _plain(f) for run, f in self.floors.items()},
            "baseline": self.baseline,
            "pairs": self.pairs,
            "runs": self.runs,
            "timings": {
                "seconds": self.seconds,
                "frameworks": self.framework_seconds,
                "by_run": {run["label"]: run["seconds"] for run in self.runs},
            },
        }


class MatrixSession:
    """The lane's frameworks imported once, their versions, and the baseline for them."""

    def __init__(self, table: Table, lane: str, *, baselines: Path | None = None) -> None:
        self.table = table
        self.lane = table.lane(lane)
        self._baseline_directory = baselines
        self.import_seconds = 0.0
        self.versions: dict[str, str] = {}
        self.baseline = Baseline(self.lane.name, {}, table.ratchet)

    def prepare(self, frameworks: Iterable[str]) -> None:
        """Import ``frameworks`` (torch first, as TensorFlow needs) and load the baseline."""
        start = time.perf_counter()
        names = sorted(set(frameworks))
        if names and FRAMEWORKS["torch"].available():
            require("torch")  # first: TensorFlow imported before it can crash it
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

    def run(self, cell: Cell) -> CellResult:
        """Run one cell and judge it: tolerance first, then the ratchet."""
        from ..runner import compare

        start = time.perf_counter()
        try:
            report = compare(
                cell_stack(cell),
                frameworks=list(cell.frameworks),
                devices=list(cell.devices),
                dtypes=[cell.dtype],
                tf32=cell.tf32,
                seed=cell.seed,
                lengths=cell_lengths(cell),
                batch=cell.batch,
                steps=cell.steps,
            )
        except Exception as error:  # one cell's failure must not stop the lane
            message = f"{type(error).__name__}: {error}".splitlines()[0]
            return CellResult(
                cell, [f"FAILED | {cell.id} | {message}"], seconds=time.perf_counter() - start
            )
        seconds = time.perf_counter() - start
        return self._judge(cell, report, seconds)

    def _judge(self, cell: Cell, report: Report, seconds: float) -> CellResult:
        errors = [
            f"FAILED | {cell.id} | {line.removeprefix('FAILED | ')}" for line in report.failures
        ]
        ran = {run.label for run in report.runs}
        for spec in _planned(cell):
            if spec.label not in ran:
                errors.append(
                    f"FAILED | {cell.id} | {spec.label} did not run: {spec.framework} does not "
                    f"offer {spec.dtype} on {spec.device} here"
                )
        against_reference = [p for p in report.pairs if p.expected == REFERENCE.label]
        max_errors = {p.actual: p.max_abs_error for p in against_reference}
        floors = {p.actual: p.tolerance / NOISE_FACTOR for p in against_reference}
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
                    "max_abs_error": _plain(p.max_abs_error),
                    "tolerance": p.tolerance,
                    "message": None if p.passed else p.comparison.message(),
                }
                for p in report.pairs
            ],
            runs=[
                {
                    "label": run.label,
                    "framework": run.spec.framework,
                    "device": run.spec.device,
                    "dtype": run.spec.dtype,
                    "seconds": run.seconds,
                    "error": run.error,
                }
                for run in report.runs
            ],
            baseline=self.baseline.cells.get(cell.id),
            seconds=seconds,
        )


def _planned(cell: Cell) -> list[RunSpec]:
    """Every run the table says the cell has: each framework on each device."""
    return [
        RunSpec(framework, device, cell.dtype, cell.tf32)
        for framework in cell.frameworks
        for device in cell.devices
    ]


def _plain(value: float) -> float | str:
    """JSON has no infinity or NaN: write them as strings."""
    return value if math.isfinite(value) else str(value)


@dataclass
class LaneResult:
    """Every cell of one run of a lane (or of one shard of it), with timings.

    ``cells_seconds`` adds up the time each process spent running its cells, so that with
    several processes it still compares with ``framework_seconds``; ``wall_seconds`` is the
    time from the first import to the last cell.
    """

    lane: str
    shard: tuple[int, int]
    results: list[CellResult]
    versions: dict[str, str]
    baseline: Baseline
    skipped_frameworks: dict[str, str]
    import_seconds: float
    cells_seconds: float
    wall_seconds: float
    jobs: int = 1

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)

    @property
    def framework_seconds(self) -> float:
        return sum(result.framework_seconds for result in self.results)

    @property
    def overhead_ratio(self) -> float:
        """Time running the cells over the frameworks' own time in them."""
        return self.cells_seconds / max(self.framework_seconds, 1e-9)


Progress = Callable[[int, int, CellResult], None]


def run_lane(
    table: Table,
    lane: str,
    cells: Sequence[Cell],
    *,
    shard: tuple[int, int] = (1, 1),
    jobs: int = 1,
    baselines: Path | None = None,
    skipped_frameworks: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> LaneResult:
    """Run ``cells``, in ``jobs`` processes; ``progress(done, total, result)`` after each.

    Each process imports the frameworks once and runs whole structure groups, so compiled
    Keras functions are reused as in one process.
    """
    start = time.perf_counter()
    if jobs > 1 and len(cells) > 1:
        result = _run_in_processes(table, lane, list(cells), jobs, baselines, progress)
    else:
        result = _run_here(table, lane, cells, baselines, progress)
    result.shard = shard
    result.skipped_frameworks = dict(skipped_frameworks or {})
    result.wall_seconds = time.perf_counter() - start
    return result


def _run_here(
    table: Table,
    lane: str,
    cells: Sequence[Cell],
    baselines: Path | None,
    progress: Progress | None,
    done_before: int = 0,
    total: int | None = None,
) -> LaneResult:
    start = time.perf_counter()
    session = MatrixSession(table, lane, baselines=baselines)
    session.prepare({name for cell in cells for name in cell.frameworks})
    loop_start = time.perf_counter()
    results = []
    for index, cell in enumerate(cells):
        result = session.run(cell)
        results.append(result)
        if progress is not None:
            progress(done_before + index + 1, total or len(cells), result)
    end = time.perf_counter()
    return LaneResult(
        lane=lane,
        shard=(1, 1),
        results=results,
        versions=session.versions,
        baseline=session.baseline,
        skipped_frameworks={},
        import_seconds=session.import_seconds,
        cells_seconds=end - loop_start,
        wall_seconds=end - start,
    )


def _run_in_processes(
    table: Table,
    lane: str,
    cells: list[Cell],
    jobs: int,
    baselines: Path | None,
    progress: Progress | None,
) -> LaneResult:
    """Split ``cells`` by structure groups over fresh processes and merge what they return."""
    import multiprocessing
    import queue as queues
    from concurrent.futures import ProcessPoolExecutor

    from .cells import shard

    parts = [part for part in (shard(cells, k, jobs) for k in range(1, jobs + 1)) if part]
    # Fresh interpreters: a forked copy of a process that imported TensorFlow can hang.
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    done = 0
    with ProcessPoolExecutor(
        len(parts), mp_context=context, initializer=_worker_init, initargs=(events,)
    ) as pool:
        futures = [pool.submit(_worker, table, lane, part, baselines) for part in parts]
        while done < len(cells) and not all(f.done() for f in futures):
            try:
                result = events.get(timeout=0.2)
            except queues.Empty:
                continue
            done += 1
            if progress is not None:
                progress(done, len(cells), result)
        shards = [future.result() for future in futures]  # raises a worker's exception
    while done < len(cells) and progress is not None:  # events still on their way
        try:
            result = events.get(timeout=1.0)
        except queues.Empty:
            break
        done += 1
        progress(done, len(cells), result)
    order = {cell.id: index for index, cell in enumerate(cells)}
    results = sorted((r for s in shards for r in s.results), key=lambda r: order[r.cell.id])
    first = shards[0]
    return LaneResult(
        lane=lane,
        shard=(1, 1),
        results=results,
        versions=first.versions,
        baseline=first.baseline,
        skipped_frameworks={},
        import_seconds=max(s.import_seconds for s in shards),
        cells_seconds=sum(s.cells_seconds for s in shards),
        wall_seconds=0.0,
        jobs=len(parts),
    )


_EVENTS: Any = None


def _worker_init(events: Any) -> None:
    """Runs in each new process before any framework is imported."""
    global _EVENTS
    _EVENTS = events


def _worker(table: Table, lane: str, cells: list[Cell], baselines: Path | None) -> LaneResult:
    """One process's share: its own session, each finished cell reported to the parent."""

    def report(done: int, total: int, result: CellResult) -> None:
        _EVENTS.put(result)

    return _run_here(table, lane, cells, baselines, report)
