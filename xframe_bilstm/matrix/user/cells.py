"""The cells of a user matrix: each source on each of its inputs in each dtype.

A cell's id reads ``<source>-<input>[+<input>...]-<dtype>[-tf32]`` and is stable as long
as those names are; its seed (for the inputs) comes from the id and the matrix's seed. A
cell holds plain data only, so it travels to worker processes as it is; its source is
built (a factory imported and called) when it runs, in the process that runs it.
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...frameworks import FRAMEWORKS
from ...left_out import refusal
from ...reference import Reading
from ...sources import read_source
from ..protocol import Request
from .inputs import input_arrays
from .sources import build_source
from .specs import ConfigError, InputSpec, SourceSpec, UserMatrix


@dataclass(frozen=True)
class UserCell:
    """One source on one input (or one input per model input), in one dtype.

    With ``original`` (the source ``against`` names), the cell compares ``original`` on its
    frameworks with this source as the port, labelled ``@against``.
    """

    lane: str
    spec: SourceSpec
    inputs: tuple[InputSpec, ...]
    dtype: str
    tf32: bool
    matrix_seed: int
    root: Path
    frameworks: tuple[str, ...]
    devices: tuple[str, ...]
    original: SourceSpec | None = None
    tolerances: tuple[float, float] | None = None
    paths: tuple[str, ...] = ()
    excluded: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        """e.g. ``tagger-port-tokens-float32``; unique in the matrix."""
        parts = [self.spec.name, "+".join(spec.name for spec in self.inputs), self.dtype]
        return "-".join(parts + (["tf32"] if self.tf32 else []))

    @property
    def seed(self) -> int:
        """The inputs' seed: the id's CRC-32, started from the matrix's seed."""
        return zlib.crc32(self.id.encode(), self.matrix_seed)

    @property
    def structure(self) -> Hashable:
        # A source's cells stay in one process: a factory imports once there.
        return (self.spec.name, self.dtype)

    @property
    def cost(self) -> float:
        return 1.0 + sum(spec.batch * spec.steps for spec in self.inputs) / 500.0

    def config(self) -> dict[str, Any]:
        """The configuration as plain data (for JSON records)."""
        rtol, atol = self.tolerances if self.tolerances is not None else (None, None)
        return {
            "source": self.spec.name,
            "model": self.spec.describe(),
            "against": None if self.original is None else self.original.name,
            "inputs": [spec.config() for spec in self.inputs],
            "dtype": self.dtype,
            "tf32": self.tf32,
            "paths": list(self.paths),
            "seed": self.seed,
            "rtol": rtol,
            "atol": atol,
        }

    def request(self) -> Request:
        """Build the source (and the original it is compared against) and the inputs."""
        own = build_source(self.spec, self.root)
        if self.original is None:
            source, against = own, None
        else:
            source, against = build_source(self.original, self.root), own
        arrays = input_arrays(self.inputs, self.seed)
        lengths = next((spec.row_lengths() for spec in self.inputs if spec.lengths), None)
        arguments: dict[str, Any] = {
            "inputs": arrays[0] if len(arrays) == 1 else arrays,
            "lengths": lengths,
        }
        if against is not None:
            arguments["against"] = against
        if self.tolerances is not None:
            arguments["rtol"], arguments["atol"] = self.tolerances
        read = read_source(source)  # once: planning and compare() take the Read
        return Request(read, arguments, self._exclusions(read.reading, lengths is not None))

    def _exclusions(self, reading: Reading, masked: bool) -> tuple[tuple[str, str], ...]:
        """The frameworks of the cell that cannot run ``reading`` (with its lengths where
        ``masked``), or not in its dtype."""
        from ...planning import dtype_refusal

        excluded = []
        for name in self.frameworks:
            why = refusal(name, reading, masked) or dtype_refusal(reading, [self.dtype])
            if why:
                excluded.append((name, why))
        return tuple(excluded)


def user_cells(
    matrix: UserMatrix, available: set[str] | None = None
) -> tuple[list[UserCell], dict[str, str]]:
    """Every cell of ``matrix`` in file order, and the frameworks ``"auto"`` left out.

    ``available`` are the frameworks installed here (default: ask the registry); frameworks
    named in the file run whether or not they are (a missing one fails its cells, loudly).
    """
    every = [name for name in FRAMEWORKS if name != "reference"]
    if available is None:
        available = {name for name in every if FRAMEWORKS[name].available()}
    skipped: dict[str, str] = {}
    cells: dict[str, UserCell] = {}
    for spec in matrix.sources:
        frameworks = spec.frameworks if spec.frameworks is not None else matrix.frameworks
        if frameworks == "auto":
            skipped.update({name: "not installed" for name in every if name not in available})
            frameworks = tuple(name for name in every if name in available)
        original = None if spec.against is None else matrix.source(spec.against)
        for group in spec.inputs:
            for dtype in spec.dtypes or matrix.dtypes:
                cell = UserCell(
                    lane=matrix.name,
                    spec=spec,
                    inputs=tuple(matrix.input(name) for name in group),
                    dtype=dtype,
                    tf32=matrix.tf32,
                    matrix_seed=matrix.seed,
                    root=matrix.root,
                    frameworks=tuple(frameworks),
                    devices=matrix.devices,
                    original=original,
                    tolerances=spec.tolerances or matrix.tolerances,
                    paths=spec.paths if spec.paths is not None else matrix.paths,
                )
                if cell.id in cells:
                    raise ConfigError(
                        f"{matrix.path}: sources[{spec.name}]: cell id {cell.id!r} is also "
                        f"another source's; rename one of them"
                    )
                cells[cell.id] = cell
    return list(cells.values()), skipped


__all__ = ["UserCell", "user_cells"]
