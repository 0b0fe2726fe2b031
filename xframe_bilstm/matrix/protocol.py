"""What the runner needs of a matrix and its cells, and the call a cell asks for.

A cell is anything that says where it runs and builds its own :class:`Request` (the
source and the arguments only it knows): the table's cells (:mod:`.cells`) and the cells
of a user matrix (:mod:`.user`) run through the same session, records and ratchet. A
matrix is anything with a ``ratchet`` and a ``lane(name)`` that has a ``name``.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol


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
