"""Cells: one configuration each, generated from a lane of the table, with readable ids.

Generation takes the product of each block's axes, applies the table's rules and
exclusions, drops repeats, and orders the cells so that cells sharing a Keras structure are
neighbours (their compiled functions are reused). Shards split the lane by those groups.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

from .runner import Request
from .table import Lane, Table

# How merge modes and returns read in ids.
_DIRECTION_ID = {"forward": "fwd", "backward": "bwd", "bidirectional": "bi"}
_RETURNS_ID = {
    "sequences": "seq",
    "sequences+state": "seq+state",
    "last": "last",
    "last+state": "last+state",
}


@dataclass(frozen=True)
class Cell:
    """One configuration of the matrix and where it runs.

    ``merge_mode`` is None for forward and backward layers (and ``"none"`` for a
    bidirectional layer that returns both directions). ``paths`` are the kernel paths run
    besides each framework's default. ``excluded`` names the frameworks of the lane that do
    not run here, and the kernel paths (``keras:unroll``) left out, with the table's reason.
    """

    lane: str
    block: str
    cell: str
    direction: str
    merge_mode: str | None
    layers: int
    returns: str
    mask: str
    steps: int
    batch: int
    dtype: str
    tf32: bool
    weight_scale: float
    units: int
    input_size: int
    paths: tuple[str, ...]
    frameworks: tuple[str, ...]
    devices: tuple[str, ...]
    excluded: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        """e.g. ``lstm-bi.concat-L2-seq+state-masked-T7xB3-D5H6-float32``; unique in a lane."""
        layout = _DIRECTION_ID[self.direction]
        if self.merge_mode is not None:
            layout += f".{self.merge_mode}"
        parts = [
            self.cell,
            layout,
            f"L{self.layers}",
            _RETURNS_ID[self.returns],
            "masked" if self.mask == "right-padded" else "unmasked",
            f"T{self.steps}xB{self.batch}",
            f"D{self.input_size}H{self.units}",
            self.dtype,
        ]
        if self.weight_scale != 1.0:
            parts.append(f"w{self.weight_scale:g}")
        if self.tf32:
            parts.append("tf32")
        if self.paths:
            parts.append("+".join(self.paths))
        return "-".join(parts)

    @property
    def seed(self) -> int:
        """A seed for weights and input that depends on the configuration only."""
        return zlib.crc32(self.id.encode())

    @property
    def return_sequences(self) -> bool:
        return self.returns.startswith("sequences")

    @property
    def return_state(self) -> bool:
        return self.returns.endswith("+state")

    @property
    def structure(self) -> tuple[Any, ...]:
        """What a compiled Keras function depends on, besides shapes and the mask."""
        return (
            self.dtype,
            self.cell,
            self.direction,
            self.merge_mode,
            self.layers,
            self.returns,
            self.units,
            self.input_size,
            self.tf32,
            self.paths,
        )

    @property
    def cost(self) -> float:
        """Rough relative run time: a fixed part (compiling, exporting) and the recurrence."""
        directions = 2 if self.direction == "bidirectional" else 1
        return 1.0 + self.steps * self.layers * directions / 200.0

    def request(self) -> Request:
        """The cell's stack (seeded weights), lengths and input shape for compare()."""
        from .models import cell_lengths, cell_stack

        arguments = {"lengths": cell_lengths(self), "batch": self.batch, "steps": self.steps}
        return Request(cell_stack(self), arguments)

    def config(self) -> dict[str, Any]:
        """The configuration as plain data (for JSON records)."""
        data = asdict(self)
        for key in ("lane", "frameworks", "devices", "excluded"):
            data.pop(key)
        data.update(
            seed=self.seed,
            return_sequences=self.return_sequences,
            return_state=self.return_state,
        )
        return data


def lane_cells(
    table: Table, lane_name: str, available: set[str] | None = None
) -> tuple[list[Cell], dict[str, str]]:
    """Every cell of a lane, in run order, and the optional frameworks that do not run.

    ``available`` are the frameworks installed here (default: ask the registry); required
    frameworks run whether or not they are (a missing one fails its cells, loudly).

    Example:
        >>> from xframe_bilstm.matrix.table import load_table
        >>> cells, _ = lane_cells(load_table(), "default", available=set())
        >>> len(cells) >= 200, len({cell.id for cell in cells}) == len(cells)
        (True, True)
    """
    lane = table.lane(lane_name)
    if available is None:
        from ..frameworks import FRAMEWORKS

        available = {name for name, framework in FRAMEWORKS.items() if framework.available()}
    skipped = {
        name: "not installed"
        for name in lane.optional_frameworks
        if name not in available  # optional frameworks run only where installed
    }
    frameworks = lane.frameworks + tuple(n for n in lane.optional_frameworks if n not in skipped)
    defaults = dict(table.defaults)
    cells: dict[str, Cell] = {}
    for block in lane.blocks:
        axes = {**defaults, **dict(block.axes)}
        names = list(axes)
        for values in itertools.product(*(axes[name] for name in names)):
            cell = _cell(table, lane, block.name, dict(zip(names, values)), frameworks)
            if cell is not None:
                cells.setdefault(cell.id, cell)  # a repeat keeps its first block
    return _grouped(list(cells.values())), skipped


def _cell(
    table: Table,
    lane: Lane,
    block: str,
    config: dict[str, Any],
    frameworks: tuple[str, ...],
) -> Cell | None:
    has_gpu = any(device.startswith("gpu") for device in lane.devices)
    if config["tf32"] and not has_gpu:
        return None  # TF32 changes nothing on CPU
    if config["direction"] != "bidirectional":
        config["merge_mode"] = None  # one cell, whatever the block's merge modes
    excluded = []
    running = []
    for framework in frameworks:
        reason = _exclusion(table, framework, None, config)
        if reason is not None:
            excluded.append((framework, reason))
            continue
        running.append(framework)
        for path in config["paths"]:
            reason = _exclusion(table, framework, path, config)
            if reason is not None:
                excluded.append((f"{framework}:{path}", reason))
    if not running:
        return None
    return Cell(
        lane=lane.name,
        block=block,
        frameworks=tuple(running),
        devices=lane.devices,
        excluded=tuple(excluded),
        **config,
    )


def _exclusion(
    table: Table, framework: str, path: str | None, config: dict[str, Any]
) -> str | None:
    """The reason the table gives for leaving ``framework`` (or one path of it) out, if any."""
    return next(
        (e.reason for e in table.exclusions if e.path == path and e.matches(framework, config)),
        None,
    )


def _grouped(cells: list[Cell]) -> list[Cell]:
    """Cells sharing a Keras structure next to each other, groups in first-seen order."""
    order: dict[tuple[Any, ...], int] = {}
    for cell in cells:
        order.setdefault(cell.structure, len(order))
    return sorted(cells, key=lambda cell: (order[cell.structure], cell.mask != "none"))


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
