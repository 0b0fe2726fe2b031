"""What a user matrix file declares, once checked: the matrix, its sources and its inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..table import TableError


class ConfigError(TableError):
    """The matrix file says something this module cannot mean; the message names where."""


@dataclass(frozen=True)
class InputSpec:
    """One input array: ``(batch, steps)`` integer ids or ``(batch, steps, features)``
    floats, right-padded with ``pad`` after each row's length when ``lengths`` are given
    (repeated over the batch)."""

    name: str
    batch: int
    steps: int
    dtype: str
    features: int | None = None
    low: int | None = None
    high: int | None = None
    scale: float = 1.0
    lengths: tuple[int, ...] | None = None
    pad: float = 0

    def row_lengths(self) -> list[int] | None:
        """One length per batch row: the declared ones, repeated."""
        if self.lengths is None:
            return None
        return [self.lengths[row % len(self.lengths)] for row in range(self.batch)]

    def config(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "shape": [self.batch, self.steps]}
        if self.features is not None:
            data["shape"].append(self.features)
        data["dtype"] = self.dtype
        if self.dtype.startswith("int"):
            data.update(low=self.low, high=self.high)
        else:
            data["scale"] = self.scale
        if self.lengths is not None:
            data.update(lengths=self.row_lengths(), pad=self.pad)
        return data


@dataclass(frozen=True)
class SourceSpec:
    """One model: a file or a factory; ``against`` names the source it is compared with.

    ``frameworks``, ``dtypes``, ``paths`` and the tolerances, when set, replace the
    matrix's.
    """

    name: str
    file: Path | None
    factory: str | None
    inputs: tuple[tuple[str, ...], ...]
    against: str | None = None
    frameworks: tuple[str, ...] | str | None = None
    dtypes: tuple[str, ...] | None = None
    tolerances: tuple[float, float] | None = None  # (rtol, atol)
    paths: tuple[str, ...] | None = None

    def describe(self) -> str:
        return str(self.file) if self.file is not None else f"factory {self.factory}"


@dataclass(frozen=True)
class UserMatrix:
    """A user matrix: its name (the lane), axes, tolerances, sources and inputs."""

    path: Path
    name: str
    description: str
    baselines: Path
    frameworks: tuple[str, ...] | str  # or "auto"
    devices: tuple[str, ...]  # or ("auto",)
    dtypes: tuple[str, ...]
    tf32: bool
    seed: int
    tolerances: tuple[float, float] | None  # (rtol, atol), or derived when None
    ratchet: float
    sources: tuple[SourceSpec, ...]
    inputs: tuple[InputSpec, ...]
    paths: tuple[str, ...] = ()  # kernel paths run besides each framework's default

    @property
    def root(self) -> Path:
        """The folder relative paths and factory modules are found from."""
        return self.path.parent

    def lane(self, name: str) -> UserMatrix:
        """The matrix is its own only lane (for the runner, which asks tables for lanes)."""
        if name != self.name:
            raise ConfigError(f"{self.path}: the matrix is {self.name!r}, not {name!r}")
        return self

    def source(self, name: str) -> SourceSpec:
        return next(source for source in self.sources if source.name == name)

    def input(self, name: str) -> InputSpec:
        return next(spec for spec in self.inputs if spec.name == name)
