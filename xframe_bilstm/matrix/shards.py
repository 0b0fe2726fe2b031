"""Shards: a lane's cells split into parts that keep each structure group whole."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Protocol, TypeVar


class Shardable(Protocol):
    @property
    def structure(self) -> Hashable: ...
    @property
    def cost(self) -> float: ...


CellT = TypeVar("CellT", bound=Shardable)


def shard(cells: Sequence[CellT], index: int, count: int) -> list[CellT]:
    """Shard ``index`` (1-based) of ``count``: whole structure groups, balanced by cost.

    Groups go, largest first, to the shard with the least work so far; the split depends
    on the cells only, so every machine computes the same shards.

    Example:
        >>> from xframe_bilstm.matrix.cells import lane_cells
        >>> from xframe_bilstm.matrix.table import load_table
        >>> cells, _ = lane_cells(load_table(), "default", available=set())
        >>> parts = [shard(cells, k, 3) for k in (1, 2, 3)]
        >>> sorted(c.id for part in parts for c in part) == sorted(c.id for c in cells)
        True
    """
    if not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count}: expected 1 <= K <= N")
    costs: dict[Hashable, float] = {}
    for cell in cells:
        costs[cell.structure] = costs.get(cell.structure, 0.0) + cell.cost
    loads = [0.0] * count
    owner: dict[Hashable, int] = {}
    for structure in sorted(costs, key=lambda s: -costs[s]):  # stable: ties keep lane order
        target = loads.index(min(loads))
        owner[structure] = target
        loads[target] += costs[structure]
    return [cell for cell in cells if owner[cell.structure] == index - 1]
