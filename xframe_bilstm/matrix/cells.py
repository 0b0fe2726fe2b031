"""The table's cells: one configuration each, with a readable id, its model and its mask.

Generation takes the product of each block's axes, applies the table's rules and
exclusions, drops repeats, and orders the cells so that cells sharing a Keras structure are
neighbours (their compiled functions are reused; shards keep those groups whole).

A cell's model has seeded random weights that cannot hide a gate bug
(:mod:`~xframe_bilstm.factories`), float32 values as trained models have (each run casts
them to its dtype), with the bias layout Keras uses.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from ..canonical import RecurrentStack
from ..factories import random_stack
from ..frameworks import FRAMEWORKS
from ..left_out import refusal
from .protocol import Request
from .table import Lane, Table
from .training_cells import TrainingCell, training_cells

# Why a framework a block adds does not run in its cells.
NOT_INSTALLED = "not installed"

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
    ``reset_after`` is a GRU's (True for other cells); with ``gradients`` the cell compares
    gradients too (``compare(..., gradients=True)``).
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
    reset_after: bool = True
    gradients: bool = False

    @property
    def id(self) -> str:
        """e.g. ``lstm-bi.concat-L2-seq+state-masked-T7xB3-D5H6-float32``; unique in a lane.

        A GRU without ``reset_after`` ends in ``-r0``, a cell comparing gradients in ``-grad``.
        """
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
        if not self.reset_after:
            parts.append("r0")
        if self.gradients:
            parts.append("grad")
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
        """What a compiled Keras function depends on, besides shapes and the mask; cells
        with frameworks run only on request (each starts a process or converts) form one
        group, so that one process of a run starts those frameworks' processes once."""
        on_request = tuple(n for n in self.frameworks if FRAMEWORKS[n].on_request)
        if on_request:
            return ("on request", on_request)
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
            self.reset_after,
            self.gradients,
        )

    @property
    def cost(self) -> float:
        """Rough relative run time: a fixed part (compiling, exporting) and the recurrence."""
        directions = 2 if self.direction == "bidirectional" else 1
        recurrence = self.steps * self.layers * directions / 200.0
        return (2.0 if self.gradients else 1.0) * (1.0 + recurrence)

    def request(self) -> Request:
        """The cell's stack (seeded weights), lengths and input shape for compare()."""
        lengths, stack = cell_lengths(self), cell_stack(self)
        arguments: dict[str, Any] = {"lengths": lengths, "batch": self.batch, "steps": self.steps}
        if self.gradients:
            arguments["gradients"] = True
        masked = lengths is not None  # what cannot run the lengths is left out, named
        excluded = [(name, refusal(name, stack, masked)) for name in self.frameworks]
        return Request(stack, arguments, tuple((n, why) for n, why in excluded if why))

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


def cell_stack(cell: Cell) -> RecurrentStack:
    """The canonical stack of ``cell``, with weights drawn from its seed.

    Example:
        >>> from xframe_bilstm.matrix.table import load_table
        >>> cells, _ = lane_cells(load_table(), "default", available=set())
        >>> stack = cell_stack(cells[0])
        >>> stack.layers[0].cell, stack.layers[0].weights[0].kernel.dtype
        ('lstm', dtype('float32'))
    """
    return random_stack(
        np.random.default_rng(cell.seed),
        cell.cell,
        cell.input_size,
        cell.units,
        num_layers=cell.layers,
        return_sequences=cell.return_sequences,
        return_state=cell.return_state,
        direction=cell.direction,
        merge_mode=None if cell.merge_mode == "none" else (cell.merge_mode or "concat"),
        scale=cell.weight_scale,
        dtype=np.float32,
        **({"reset_after": cell.reset_after} if cell.cell == "gru" else {}),
    )


def cell_lengths(cell: Cell) -> list[int] | None:
    """Valid steps per row for a masked cell: half, full, one step, all but one, repeating.

    Example:
        >>> from dataclasses import replace
        >>> from xframe_bilstm.matrix.table import load_table
        >>> cells, _ = lane_cells(load_table(), "default", available=set())
        >>> masked = next(c for c in cells if c.mask == "right-padded")
        >>> cell_lengths(replace(masked, steps=7, batch=5))
        [4, 7, 1, 6, 4]
    """
    if cell.mask == "none":
        return None
    steps = cell.steps
    pattern = [(steps + 1) // 2, steps, 1, max(steps - 1, 1)]
    return [pattern[row % len(pattern)] for row in range(cell.batch)]


def lane_cells(
    table: Table, lane_name: str, available: set[str] | None = None
) -> tuple[list[Cell | TrainingCell], dict[str, str]]:
    """Every cell of a lane, in run order, and the optional frameworks that do not run.

    ``available`` are the frameworks installed here (default: ask the registry); required
    frameworks run whether or not they are (a missing one fails its cells, loudly). The
    frameworks a block adds run in its cells where installed; where not, each of those cells
    names them among its ``excluded``, with why. A block's cell that repeats a cell already
    generated adds the block's frameworks to it. The lane's optimizer-parity cells
    (:mod:`.training_cells`) come last.

    Example:
        >>> from xframe_bilstm.matrix.table import load_table
        >>> cells, _ = lane_cells(load_table(), "default", available=set())
        >>> len(cells) >= 200, len({cell.id for cell in cells}) == len(cells)
        (True, True)
    """
    lane = table.lane(lane_name)
    if available is None:
        available = {name for name, framework in FRAMEWORKS.items() if framework.available()}
    skipped = {
        name: NOT_INSTALLED
        for name in (*lane.optional_frameworks, *(n for b in lane.blocks for n in b.frameworks))
        if name not in available  # optional frameworks run only where installed
    }
    frameworks = lane.frameworks + tuple(n for n in lane.optional_frameworks if n not in skipped)
    defaults = dict(table.defaults)
    cells: dict[str, Cell] = {}
    for block in lane.blocks:
        axes = {**defaults, **dict(block.axes)}
        names = list(axes)
        extra = [name for name in block.frameworks if name not in frameworks]
        running = frameworks + tuple(name for name in extra if name not in skipped)
        missing = tuple((name, skipped[name]) for name in extra if name in skipped)
        for values in itertools.product(*(axes[name] for name in names)):
            cell = _cell(table, lane, block.name, dict(zip(names, values)), running)
            if cell is None:
                continue
            cell = replace(cell, excluded=cell.excluded + missing)
            first = cells.setdefault(cell.id, cell)  # a repeat keeps its first block
            if first is not cell:
                cells[cell.id] = _joined(first, cell)
    return [*_grouped(list(cells.values())), *training_cells(lane)], skipped


def _joined(first: Cell, repeat: Cell) -> Cell:
    """``first`` running the frameworks ``repeat`` adds too, with their exclusions."""
    return replace(
        first,
        frameworks=tuple(dict.fromkeys(first.frameworks + repeat.frameworks)),
        excluded=tuple(dict.fromkeys(first.excluded + repeat.excluded)),
    )


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
    if config["cell"] != "gru":
        config["reset_after"] = True  # a GRU's option: one cell of the others either way
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
