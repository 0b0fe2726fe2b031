"""A comparison's report on screen: one line per pair, or a table on a terminal, and the
error-per-step plot; rich and matplotlib are imported only when used."""

from __future__ import annotations

import contextlib
import io
import shutil
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np

from ..report import Report


class progress_bar:
    """A progress bar on ``stream`` (standard error) while runs go, when it is a terminal."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __enter__(self) -> Callable[[int, int, str], None] | None:
        self._bar: Any = None
        if not self.stream.isatty():
            return None
        try:
            from rich.console import Console
            from rich.progress import Progress
        except ImportError:
            return None
        console = Console(file=self.stream, highlight=False, soft_wrap=True)
        self._bar = Progress(transient=True, console=console)
        self._bar.start()
        self._task = self._bar.add_task("runs", total=None)
        return self._update

    def _update(self, done: int, total: int, label: str) -> None:
        self._bar.update(self._task, completed=done, total=total, description=label)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def print_report(report: Report, table: bool = False) -> None:
    """The verdict, the runs and every pair once: as a table (``table``, on a terminal, when
    rich is installed) or as one greppable line each."""
    if table:
        with contextlib.suppress(ImportError):  # rich draws the table when installed
            print_table(report, report.header())
            return
    print(report.to_text())


def print_table(report: Report, header: list[str]) -> None:
    """Runs numbered once, then a pair table that fits the terminal (80 columns or more)."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    width = shutil.get_terminal_size().columns
    console = Console(highlight=False, width=width)
    number = {run.label: index for index, run in enumerate(report.runs, 1)}
    for line in header:
        for part in textwrap.wrap(line, width, subsequent_indent="  "):
            console.print(escape(part))
    console.print("runs")
    for run in report.runs:
        detail = run.error or run.kernel
        line = f"{number[run.label]:>3}  {run.label}" + (f": {detail}" if detail else "")
        for part in textwrap.wrap(line, width, subsequent_indent=" " * 5):
            console.print(escape(part))
    if report.correspondence:
        for line in textwrap.wrap(report.correspondence, width, subsequent_indent="  "):
            console.print(escape(line))
    pairs = Table(
        title="pairs: run vs run, largest absolute error",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for column in ("pair", "result", "error", "allowed", "forward", "backward"):
        pairs.add_column(column, justify="left" if column in ("pair", "result") else "right")
    for pair in report.pairs:
        pairs.add_row(
            f"{number[pair.actual]} vs {number[pair.expected]}",
            "PASSED" if pair else "[bold red]FAILED[/]",
            f"{pair.max_abs_error:.3g}",
            f"{pair.tolerance:.3g}",
            *(
                f"{pair.directions[d]:.3g}" if d in pair.directions else ""
                for d in ("forward", "backward")
            ),
        )
    console.print(pairs)
    failed = [pair.summary() for pair in report.pairs if not pair]
    left_out = [f"LEFT OUT | {entry}" for entry in report.left_out]
    gradients = [*report.gradient_failures, *(pair.summary() for pair in report.gradient_pairs)]
    notes = [report.tolerance_note] + ([report.gradient_note] if report.gradient_note else [])
    for line in [*failed, *gradients, *left_out, *notes]:  # which output, which shape
        for part in textwrap.wrap(line, width, subsequent_indent="  "):
            console.print(escape(part))


def plot_timesteps(report: Report) -> bytes:
    """PNG bytes: the largest error at each time step, one panel per pair with the reference."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    pairs = [pair for pair in report.pairs if pair.timesteps] or list(report.pairs)
    figure, axes = pyplot.subplots(
        len(pairs), 1, figsize=(8, 2.6 * max(len(pairs), 1)), squeeze=False
    )
    for axis, pair in zip(axes[:, 0], pairs):
        for name, curve in pair.timesteps.items():
            axis.plot(range(len(curve)), np.maximum(curve, 1e-18), label=name)
        axis.axhline(pair.tolerance, color="grey", linestyle="--", label="allowed")
        axis.set_yscale("log")
        axis.set_title(pair.label, fontsize=9)
        axis.set_xlabel("time step")
        axis.set_ylabel("max abs error")
        axis.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    pyplot.close(figure)
    return buffer.getvalue()
