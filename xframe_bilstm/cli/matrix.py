"""``python -m xframe_bilstm matrix``: run a lane of the matrix, print a summary, write records.

``--lane NAME`` runs a lane of the packaged table; ``--config FILE`` runs a user matrix
(:mod:`~xframe_bilstm.matrix.user`) instead, with its baselines in the folder the file
names. Exit status: 0 when every cell passes (within tolerance and within the baseline
ratchet), 1 when any cell fails or drifts, 2 for a usage error or a matrix file that
cannot be read.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..atomic import write_atomically
from ..matrix.cells import lane_cells
from ..matrix.protocol import Matrix, MatrixCell
from ..matrix.ratchet import Baseline
from ..matrix.records import lane_json, lane_junit, summary_lines
from ..matrix.results import CellResult, LaneResult
from ..matrix.runner import run_lane
from ..matrix.shards import shard
from ..matrix.table import TableError, load_table
from ..matrix.user import load_user_matrix, user_cells
from .arguments import positive

_QUIET = {"TF_CPP_MIN_LOG_LEVEL": "2", "TORCH_CPP_LOG_LEVEL": "ERROR"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m xframe_bilstm matrix",
        description="Run a lane of the regression matrix: every cell on every framework and "
        "device of the lane, compared with the float64 reference and with its baseline.",
    )
    parser.add_argument("--lane", help="default (the default), slow or gpu")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="run the user matrix this TOML file declares instead of a lane",
    )
    parser.add_argument(
        "--shard", type=_shard, default=(1, 1), metavar="K/N", help="run part K of N (1-based)"
    )
    parser.add_argument("--json", metavar="FILE", help="write one record per cell as JSON")
    parser.add_argument("--junit", metavar="FILE", help="write one test case per cell as JUnit")
    parser.add_argument(
        "--update-baselines",
        action="store_true",
        help="record this run's errors as the baseline of the installed framework versions",
    )
    parser.add_argument(
        "--baselines",
        metavar="DIR",
        type=Path,
        help="baseline folder (default: the packaged one, or the one the --config file names)",
    )
    parser.add_argument(
        "--tf32",
        choices=("on", "off", "both"),
        default="both",
        help="only the cells that allow TF32 on GPUs (on), or only those that do not (off)",
    )
    parser.add_argument(
        "--jobs", type=positive, default=1, help="processes to spread the cells over"
    )
    parser.add_argument("--list", action="store_true", help="print the cells' ids and stop")
    return parser


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N, got {text!r}") from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"expected 1 <= K <= N, got {text!r}")
    return index, count


def matrix_main(argv: Sequence[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config is not None and args.lane is not None:
        parser.error("--lane and --config exclude each other: the file's [matrix] name is its lane")
    try:
        table, lane_name, description, baselines, cells, skipped = _selected(args)
    except TableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.tf32 != "both":
        cells = [cell for cell in cells if cell.tf32 == (args.tf32 == "on")]
    cells = shard(cells, *args.shard)
    if args.list:
        for cell in cells:
            print(cell.id)
        return 0
    # The frameworks' C++ notices (oneDNN, CUDA probing, exporter shape inference) would
    # bury the progress and the summary; their errors still show.
    for name, level in _QUIET.items():
        os.environ.setdefault(name, level)
    with _progress(len(cells)) as progress:
        result = run_lane(
            table,
            lane_name,
            cells,
            shard=args.shard,
            jobs=args.jobs,
            baselines=baselines,
            skipped_frameworks=skipped,
            progress=progress,
        )
    for line in summary_lines(result):
        print(line)
    if args.json:
        write_atomically(args.json, lane_json(result, description))
    if args.junit:
        write_atomically(args.junit, lane_junit(result))
    if args.update_baselines:
        path = _update(result, replace=args.shard == (1, 1))
        print(f"baseline written: {path}")
        return 0 if all(r.within_tolerance for r in result.results) else 1
    return 0 if result.passed else 1


def _selected(
    args: argparse.Namespace,
) -> tuple[Matrix, str, str, Path | None, list[MatrixCell], dict[str, str]]:
    """The matrix, lane name, description, baseline folder, cells and skipped frameworks
    of a lane of the table or of the user matrix ``--config`` names."""
    if args.config is not None:
        matrix = load_user_matrix(args.config)
        found, skipped = user_cells(matrix)
        baselines = args.baselines or matrix.baselines
        return matrix, matrix.name, matrix.description, baselines, [*found], skipped
    table = load_table()
    lane = args.lane or "default"
    cells, skipped = lane_cells(table, lane)
    return table, lane, table.lane(lane).description, args.baselines, [*cells], skipped


def _update(result: LaneResult, *, replace: bool) -> Path:
    """Record the errors of every cell within tolerance; a whole lane replaces the file,
    a shard updates its own cells."""
    old = result.baseline
    baseline = Baseline(old.lane, old.versions, old.ratchet, {} if replace else old.cells, old.path)
    for cell_result in result.results:
        if cell_result.within_tolerance:
            baseline.record(cell_result.cell.id, cell_result.max_errors)
    return baseline.save()


class _progress:
    """A progress bar on standard error: rich's on a terminal, text lines elsewhere."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.failed = 0
        self._bar: Any = None
        self._shown = -1

    def __enter__(self) -> Callable[[int, int, CellResult], None]:
        if sys.stderr.isatty():
            try:
                from rich.console import Console
                from rich.progress import Progress

                self._bar = Progress(transient=True, console=Console(stderr=True))
                self._bar.start()
                self._task = self._bar.add_task("cells", total=self.total)
            except ImportError:
                self._bar = None
        return self._update

    def _update(self, done: int, total: int, result: CellResult) -> None:
        self.failed += not result.passed
        if self._bar is not None:
            self._bar.update(self._task, completed=done, description=_short(result.cell))
            return
        tenth = done * 10 // max(total, 1)  # a line per tenth keeps CI logs short
        if tenth != self._shown or not result.passed:
            self._shown = tenth
            bar = "#" * tenth + "." * (10 - tenth)
            print(
                f"[{bar}] {done}/{total} cells, {self.failed} failing; last {result.cell.id}",
                file=sys.stderr,
                flush=True,
            )

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _short(cell: MatrixCell) -> str:
    return cell.id if len(cell.id) < 48 else cell.id[:45] + "..."
