"""What a run measured: one cell's :class:`CellResult` and a lane's :class:`LaneResult`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .protocol import MatrixCell
from .ratchet import Baseline, Drift


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
                    "error": json_number(d.error),
                    "baseline": d.baseline,
                    "floor": d.floor,
                    "factor": json_number(d.factor),
                    "ratchet": d.ratchet,
                }
                for d in self.drifts
            ],
            "max_errors": {run: json_number(e) for run, e in self.max_errors.items()},
            "reference_drift": {run: json_number(f) for run, f in self.floors.items()},
            "baseline": self.baseline,
            "pairs": self.pairs,
            "runs": self.runs,
            "timings": {
                "seconds": self.seconds,
                "frameworks": self.framework_seconds,
                "by_run": {run["label"]: run["seconds"] for run in self.runs},
            },
        }


def json_number(value: float) -> float | str:
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
