"""Baselines: each cell's measured error, committed per lane and framework-version set.

A run's max error against the float64 reference may drift upwards long before it reaches
the tolerance (a kernel that lost precision, a conversion that now rounds twice). The
ratchet catches that: a run fails when its error exceeds ``ratchet`` times the larger of

- its baseline, the error measured when the baseline was recorded, and
- the float32 reference's own drift from float64 at the run's precision (the pair's
  tolerance divided by :data:`~xframe_bilstm.comparison.NOISE_FACTOR`), so that errors far
  below what rounding explains never count as drift.

The factor is the table's ``ratchet`` (4). Baselines are files
``baselines/<lane>/<version key>.json``, one per set of framework versions, since another
release of a framework may round differently; a set without a file runs without the ratchet
and says so. ``python -m xframe_bilstm matrix --lane NAME --update-baselines`` rewrites the
file of the installed versions.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..atomic import write_atomically

# Versions that do not change how a framework computes: left out of the key.
_NOT_IN_KEY = ("python", "numpy")


@dataclass(frozen=True)
class Drift:
    """One run whose error grew past the ratchet: how much, against what."""

    cell: str
    run: str
    error: float
    baseline: float
    floor: float
    ratchet: float

    @property
    def factor(self) -> float:
        """The error over the larger of the baseline and the floor."""
        return self.error / max(self.baseline, self.floor)

    def describe(self) -> str:
        return (
            f"DRIFT | {self.cell} | {self.run}: max error {self.error:.3g} is "
            f"{self.factor:.1f}x max(baseline {self.baseline:.3g}, reference drift "
            f"{self.floor:.3g}); the ratchet allows {self.ratchet:g}x"
        )


@dataclass
class Baseline:
    """The recorded errors of one lane under one set of framework versions."""

    lane: str
    versions: dict[str, str]
    ratchet: float
    cells: dict[str, dict[str, float]] = field(default_factory=dict)
    path: Path | None = None
    found: bool = False  # whether a file was read

    def check(self, cell: str, measured: Mapping[str, tuple[float, float]]) -> list[Drift]:
        """The runs of ``cell`` whose ``(error, floor)`` passed the ratchet; [] when none
        did, or when the cell or run has no baseline yet.

        Example:
            >>> baseline = Baseline("lane", {}, 4.0, {"c": {"torch": 1e-7}})
            >>> baseline.check("c", {"torch": (3.9e-7, 5e-8)})
            []
            >>> [round(d.factor, 1) for d in baseline.check("c", {"torch": (5e-7, 5e-8)})]
            [5.0]
        """
        recorded = self.cells.get(cell, {})
        drifts = []
        for run, (error, floor) in measured.items():
            if run not in recorded:
                continue
            limit = self.ratchet * max(recorded[run], floor)
            if not error <= limit:  # NaN errors drift too
                drifts.append(Drift(cell, run, error, recorded[run], floor, self.ratchet))
        return drifts

    def record(self, cell: str, errors: Mapping[str, float]) -> None:
        """Set the baseline of ``cell`` to these errors (finite ones only)."""
        self.cells[cell] = {run: e for run, e in sorted(errors.items()) if math.isfinite(e)}

    def to_json(self) -> str:
        data = {
            "lane": self.lane,
            "versions": dict(sorted(self.versions.items())),
            "ratchet": self.ratchet,
            "cells": {cell: self.cells[cell] for cell in sorted(self.cells)},
        }
        return json.dumps(data, indent=1) + "\n"

    def save(self, path: Path | None = None) -> Path:
        target = path or self.path
        if target is None:
            raise ValueError("the baseline has no path to be saved to")
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, self.to_json())
        return target


def version_key(versions: Mapping[str, str]) -> str:
    """A file name for a set of framework versions.

    Example:
        >>> version_key({"torch": "2.13.0+cpu", "python": "3.11.7", "gpu": "NVIDIA H200"})
        'gpu-NVIDIA_H200_torch-2.13.0+cpu'
    """
    parts = [
        f"{name}-{version}" for name, version in sorted(versions.items()) if name not in _NOT_IN_KEY
    ]
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", "_".join(parts)) or "no-frameworks"


def default_directory() -> Path:
    """Where the packaged baselines live."""
    return Path(str(resources.files(__package__).joinpath("baselines")))


def load_baseline(
    lane: str,
    versions: Mapping[str, str],
    ratchet: float,
    directory: Path | None = None,
) -> Baseline:
    """The baseline of ``lane`` for these versions; an empty one when none is recorded."""
    path = (directory or default_directory()) / lane / f"{version_key(versions)}.json"
    baseline = Baseline(lane, dict(versions), ratchet, path=path)
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        baseline.cells = {
            cell: {run: float(error) for run, error in runs.items()}
            for cell, runs in data.get("cells", {}).items()
        }
        baseline.found = True
    return baseline
