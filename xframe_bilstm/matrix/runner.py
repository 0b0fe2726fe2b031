"""Running cells: each through :func:`~xframe_bilstm.compare`, judged against its baseline.

A :class:`MatrixSession` imports the lane's frameworks once (torch first), learns their
versions and loads the baseline for them; :meth:`MatrixSession.run` then runs one cell:
the reference once, every framework and device of the cell, every pair compared with the
tolerance derived for that model, and each run's error checked against the ratchet. The
Keras framework keeps one built layer per structure, so cells that differ only in weights,
input or mask reuse its compiled function.

A cell is anything that says where it runs and builds its own :class:`Request` (the
source and the arguments only it knows): the table's cells (:mod:`.cells`) and the cells
of a user matrix (:mod:`.user`) run through the same session, records and ratchet. A
matrix is anything with a ``ratchet`` and a ``lane(name)`` that has a ``name``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .._imports import require
from ..comparison import NOISE_FACTOR
from ..errors import UnsupportedFeatureError
from ..frameworks import FRAMEWORKS, RunSpec
from ..report import Report
from .ratchet import Baseline, Drift, load_baseline

REFERENCE = RunSpec("reference", "cpu", "float64")


@dataclass(frozen=True)
class Request:
    """One cell's :func:`~xframe_bilstm.compare` call, besides what every cell says.

    ``arguments`` are the cell's own keywords (``inputs``, ``lengths``, ``against``...);
    ``excluded`` are frameworks the cell learnt, once its source was built, that cannot run
    it (a whole model on ONNX, say), with the reason: they are left out, not failed.
    """

    source: Any
    arguments: dict[str, Any] = field(default_factory=dict)
    excluded: tuple[tuple[str, str], ...] = ()


class MatrixCell(Protocol):
    """What the runner needs of a cell. ``devices`` may be ``("auto",)``: every device
    each framework sees. ``structure`` groups cells that must share a process (and a shard),
    ``cost`` weighs them when shards are balanced."""

    @property
    def id(self) -> str: ...
    @property
    def lane(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def frameworks(self) -> tuple[str, ...]: ...
    @property
    def devices(self) -> tuple[str, ...]: ...
    @property
    def dtype(self) -> str: ...
    @property
    def tf32(self) -> bool: ...
    @property
    def paths(self) -> tuple[str, ...]: ...
    @property
    def excluded(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def structure(self) -> Hashable: ...
    @property
    def cost(self) -> float: ...
    def config(self) -> dict[str, Any]: ...
    def request(self) -> Request: ...


class MatrixLane(Protocol):
    @property
    def name(self) -> str: ...


class Matrix(Protocol):
    """The built-in :class:`~xframe_bilstm.matrix.table.Table` or a user matrix."""

    @property
    def ratchet(self) -> float: ...
    def lane(self, name: str) -> MatrixLane: ...


@dataclass
class CellResult:
    """What one cell measured, and its verdict.

    ``errors`` are runs that failed, pairs beyond tolerance and planned runs that did not
    happen; ``drifts`` are runs past the baseline ratchet. ``max_errors`` and ``floors``
    hold, per run, the max error against the reference and the reference's own drift.
    """

    cell: MatrixCell
    errors: list[str]
    drifts: list[Drift] = field(default_factory=list)
    max_errors: dict[str, float] = field(default_factory=dict)
    floors: dict[str, float] = field(default_factory=dict)
    pairs: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    baseline: dict[str, float] | None = None
    seconds: float = 0.0
    # What ran: the cell's frameworks less those its source excluded, devices resolved.
    frameworks: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None
    excluded: dict[str, str] | None = None

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
            "frameworks": list(
                self.cell.frameworks if self.frameworks is None else self.frameworks
            ),
            "devices": list(self.cell.devices if self.devices is None else self.devices),
            "excluded": dict(self.cell.excluded) if self.excluded is None else self.excluded,
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

    def __init__(self, table: Matrix, lane: str, *, baselines: Path | None = None) -> None:
        self.table = table
        self.lane = table.lane(lane)
        self._baseline_directory = baselines
        self.import_seconds = 0.0
        self.versions: dict[str, str] = {}
        self.baseline = Baseline(self.lane.name, {}, table.ratchet)
        self._devices: dict[str, list[str]] = {}
        self._paths: dict[tuple[str, str], list[str]] = {}

    def prepare(self, frameworks: Iterable[str]) -> None:
        """Import ``frameworks`` (torch first, as TensorFlow needs) and load the baseline."""
        start = time.perf_counter()
        names = sorted(set(frameworks))
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
        from ..runner import compare

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
            planned = self._planned(cell, frameworks, excluded)
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
        result = self._judge(cell, report, seconds, planned)
        result.frameworks, result.devices, result.excluded = frameworks, devices, excluded
        return result

    def _planned(
        self, cell: MatrixCell, frameworks: Sequence[str], excluded: dict[str, str]
    ) -> list[RunSpec]:
        """Every run the cell has: each framework on each of its devices (on ``"auto"``,
        every device the framework sees), on its default path and on each of the cell's
        kernel paths it offers there and the table does not exclude."""
        planned = []
        for framework in frameworks:
            for device in self._framework_devices(framework, cell.devices):
                paths = [
                    path
                    for path in cell.paths
                    if path in self._offered(framework, device)
                    and f"{framework}:{path}" not in excluded
                ]
                for path in ["", *paths]:
                    planned.append(RunSpec(framework, device, cell.dtype, cell.tf32, path=path))
        unplanned = [
            path
            for path in cell.paths
            if not any(s.path == path for s in planned)
            and not any(f"{f}:{path}" in excluded for f in frameworks)
        ]
        if unplanned:
            raise UnsupportedFeatureError(
                f"kernel paths {unplanned} are offered by none of {list(frameworks)} on "
                f"{sorted({s.device for s in planned})}"
            )
        return planned

    def _offered(self, framework: str, device: str) -> list[str]:
        if (framework, device) not in self._paths:
            self._paths[framework, device] = FRAMEWORKS[framework]().paths(device)
        return self._paths[framework, device]

    def _framework_devices(self, framework: str, devices: tuple[str, ...]) -> list[str]:
        if devices != ("auto",):
            return list(devices)
        if framework not in self._devices:
            self._devices[framework] = FRAMEWORKS[framework]().devices()
        return self._devices[framework]

    def _judge(
        self, cell: MatrixCell, report: Report, seconds: float, planned: list[RunSpec]
    ) -> CellResult:
        errors = [
            f"FAILED | {cell.id} | {line.removeprefix('FAILED | ')}" for line in report.failures
        ]
        ran = {run.label for run in report.runs}
        for spec in planned:
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


def _device_order(device: str) -> tuple[int, str]:
    return (device != "cpu", device)


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
    table: Matrix,
    lane: str,
    cells: Sequence[MatrixCell],
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
    table: Matrix,
    lane: str,
    cells: Sequence[MatrixCell],
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
    table: Matrix,
    lane: str,
    cells: list[MatrixCell],
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


def _worker(
    table: Matrix, lane: str, cells: list[MatrixCell], baselines: Path | None
) -> LaneResult:
    """One process's share: its own session, each finished cell reported to the parent."""

    def report(done: int, total: int, result: CellResult) -> None:
        _EVENTS.put(result)

    return _run_here(table, lane, cells, baselines, report)
