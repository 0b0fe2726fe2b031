"""Running a lane: its cells through one session here, or spread over fresh processes."""

from __future__ import annotations

import multiprocessing
import queue as queues
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from .protocol import Matrix, MatrixCell
from .results import CellResult, LaneResult
from .session import MatrixSession
from .shards import shard

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
            progress(index + 1, len(cells), result)
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
