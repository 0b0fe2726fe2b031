"""The declared matrix: ``table.toml`` read into lanes, blocks and exclusions, and checked.

The table is data; this module only reads it and refuses what it cannot mean (an unknown
axis, a value outside an axis's range, a framework that is not registered), so a typo in the
table fails loudly instead of silently dropping cells.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ..canonical import CELLS, DIRECTIONS
from ..frameworks import FRAMEWORKS
from ..frameworks.base import KERNEL_PATHS

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 has no TOML reader of its own
    import tomli as tomllib

TABLE_FILE = "table.toml"

RETURNS = ("sequences", "sequences+state", "last", "last+state")
MASKS = ("none", "right-padded")
DTYPES = ("float32", "float64", "float16", "bfloat16")
MERGE_MODES = ("concat", "sum", "mul", "ave", "none")

# Every axis, and the check each of its values must pass.
AXES: dict[str, Any] = {
    "cell": lambda v: v in CELLS,
    "direction": lambda v: v in DIRECTIONS,
    "merge_mode": lambda v: v in MERGE_MODES,
    "layers": lambda v: _positive(v),
    "returns": lambda v: v in RETURNS,
    "mask": lambda v: v in MASKS,
    "steps": lambda v: _positive(v),
    "batch": lambda v: _positive(v),
    "dtype": lambda v: v in DTYPES,
    "tf32": lambda v: isinstance(v, bool),
    "weight_scale": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
    "units": lambda v: _positive(v),
    "input_size": lambda v: _positive(v),
    # Each value is a list: the kernel paths a cell runs besides the default ones.
    "paths": lambda v: isinstance(v, list) and all(path in KERNEL_PATHS for path in v),
    "reset_after": lambda v: isinstance(v, bool),
    "gradients": lambda v: isinstance(v, bool),
}
# Axes a table may leave out of [defaults], with the value they then take.
OPTIONAL_AXES: dict[str, tuple[Any, ...]] = {
    "paths": ((),),
    "reset_after": (True,),
    "gradients": (False,),
}
# The optimizers a training block may name: each is an optimizer with its hyperparameters
# (Keras's names), run by :func:`~xframe_bilstm.training.optimizer_parity`.
OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("sgd", {}),
    "sgd-momentum": ("sgd", {"momentum": 0.9}),
    "sgd-nesterov": ("sgd", {"momentum": 0.9, "nesterov": True}),
    "adam": ("adam", {}),
    "adamw": ("adamw", {"weight_decay": 0.01}),
}


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class TableError(ValueError):
    """The table says something this module cannot mean; the message names where."""


@dataclass(frozen=True)
class Exclusion:
    """Runs a framework cannot do: ``frameworks`` skip cells matching every listed axis.

    With a ``path``, only that kernel path of the frameworks is left out of those cells.
    """

    frameworks: tuple[str, ...]
    where: tuple[tuple[str, tuple[Any, ...]], ...]
    reason: str
    path: str | None = None

    def matches(self, framework: str, config: Mapping[str, Any]) -> bool:
        if framework not in self.frameworks:
            return False
        return all(config[axis] in values for axis, values in self.where)


@dataclass(frozen=True)
class Block:
    """One product of axis values; axes it does not name take the table's defaults."""

    name: str
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    # Frameworks the block's cells run besides the lane's, where installed.
    frameworks: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainingBlock:
    """Optimizer-parity cells: each cell x optimizer runs ``steps`` optimizer steps of one
    Keras layer in Keras and in PyTorch (:func:`~xframe_bilstm.training.optimizer_parity`)."""

    name: str
    cells: tuple[str, ...]
    directions: tuple[str, ...]
    optimizers: tuple[str, ...]
    steps: int


@dataclass(frozen=True)
class Lane:
    """A named subset of the matrix: its blocks, frameworks and devices."""

    name: str
    description: str
    frameworks: tuple[str, ...]
    optional_frameworks: tuple[str, ...]
    devices: tuple[str, ...]
    blocks: tuple[Block, ...]
    training: tuple[TrainingBlock, ...] = ()

    @property
    def all_frameworks(self) -> tuple[str, ...]:
        """The lane's frameworks, its optional ones and those its blocks add, in order."""
        extra = [name for block in self.blocks for name in block.frameworks]
        return tuple(dict.fromkeys([*self.frameworks, *self.optional_frameworks, *extra]))


@dataclass(frozen=True)
class Table:
    """The whole matrix: lanes, exclusions, defaults and the baseline ratchet factor."""

    ratchet: float
    defaults: tuple[tuple[str, tuple[Any, ...]], ...]
    lanes: dict[str, Lane]
    exclusions: tuple[Exclusion, ...]

    def lane(self, name: str) -> Lane:
        try:
            return self.lanes[name]
        except KeyError:
            raise TableError(f"lane {name!r} is not one of {sorted(self.lanes)}") from None


def load_table(text: str | None = None, *, frameworks: Any = None) -> Table:
    """Read and check the table: the packaged ``table.toml`` unless ``text`` is given.

    ``frameworks`` are the names a lane or exclusion may use (default: the registered ones).

    Example:
        >>> table = load_table()
        >>> sorted(table.lanes), table.ratchet
        (['default', 'gpu', 'slow'], 4.0)
    """
    if text is None:
        text = resources.files(__package__).joinpath(TABLE_FILE).read_text(encoding="utf-8")
    if frameworks is None:
        frameworks = FRAMEWORKS
    data = tomllib.loads(text)
    known = set(frameworks) - {"reference"}
    defaults = _axes(data.get("defaults", {}), "defaults")
    named = {axis for axis, _ in defaults}
    defaults += tuple((axis, value) for axis, value in OPTIONAL_AXES.items() if axis not in named)
    missing = sorted(set(AXES) - {axis for axis, _ in defaults})
    if missing:
        raise TableError(f"defaults: every axis needs a default; missing {missing}")
    lanes = {name: _lane(name, entry, known) for name, entry in data.get("lanes", {}).items()}
    exclusions = tuple(
        _exclusion(index, entry, known) for index, entry in enumerate(data.get("exclude", []))
    )
    ratchet = data.get("ratchet")
    if not isinstance(ratchet, (int, float)) or isinstance(ratchet, bool) or ratchet <= 1:
        raise TableError(f"ratchet: expected a number above 1, got {ratchet!r}")
    return Table(float(ratchet), defaults, lanes, exclusions)


def _axes(entry: Mapping[str, Any], where: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    axes = []
    for axis, values in entry.items():
        if axis not in AXES:
            raise TableError(f"{where}: {axis!r} is not an axis; axes are {sorted(AXES)}")
        if not isinstance(values, list) or not values:
            raise TableError(f"{where}.{axis}: expected a non-empty list, got {values!r}")
        for value in values:
            if not AXES[axis](value):
                raise TableError(f"{where}.{axis}: {value!r} is not a valid {axis}")
        axes.append((axis, tuple(_value(axis, v) for v in values)))
    return tuple(axes)


def _value(axis: str, value: Any) -> Any:
    """An axis value as cells hold it: hashable, and one type per axis."""
    if axis == "weight_scale":
        return float(value)
    if axis == "paths":
        return tuple(value)
    return value


def _names(values: Any, where: str, known: set[str]) -> tuple[str, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise TableError(f"{where}: expected a list of framework names, got {values!r}")
    unknown = sorted(set(values) - known)
    if unknown:
        raise TableError(f"{where}: {unknown} are not registered frameworks ({sorted(known)})")
    return tuple(values)


def _lane(name: str, entry: Mapping[str, Any], known: set[str]) -> Lane:
    where = f"lanes.{name}"
    unexpected = set(entry) - {
        "description",
        "frameworks",
        "optional_frameworks",
        "devices",
        "blocks",
        "training",
    }
    if unexpected:
        raise TableError(f"{where}: unexpected keys {sorted(unexpected)}")
    devices = entry.get("devices", ["cpu"])
    if not devices or not all(d == "cpu" or d.startswith("gpu:") for d in devices):
        raise TableError(f"{where}.devices: expected 'cpu' or 'gpu:N' names, got {devices!r}")
    blocks = []
    for index, block in enumerate(entry.get("blocks", [])):
        block = dict(block)
        block_name = block.pop("name", f"block{index}")
        block_where = f"{where}.blocks[{block_name}]"
        extra = _names(block.pop("frameworks", []), f"{block_where}.frameworks", known)
        blocks.append(Block(block_name, _axes(block, block_where), extra))
    if not blocks:
        raise TableError(f"{where}: a lane needs at least one block")
    return Lane(
        name=name,
        description=str(entry.get("description", "")),
        frameworks=_names(entry.get("frameworks", []), f"{where}.frameworks", known),
        optional_frameworks=_names(
            entry.get("optional_frameworks", []), f"{where}.optional_frameworks", known
        ),
        devices=tuple(devices),
        blocks=tuple(blocks),
        training=tuple(
            _training(index, block, where) for index, block in enumerate(entry.get("training", []))
        ),
    )


def _training(index: int, entry: Mapping[str, Any], lane: str) -> TrainingBlock:
    """A training block: ``cell``, ``direction`` and ``optimizer`` lists and ``steps``."""
    entry = dict(entry)
    name = str(entry.pop("name", f"training{index}"))
    where = f"{lane}.training[{name}]"
    choices = {"cell": CELLS, "direction": DIRECTIONS, "optimizer": tuple(OPTIMIZERS)}
    keys = {*choices, "steps"}
    unexpected = set(entry) - keys
    if unexpected:
        raise TableError(
            f"{where}: unexpected keys {sorted(unexpected)}; a training block names {sorted(keys)}"
        )
    lists = {}
    for key, allowed in choices.items():
        values = entry.get(key, ["bidirectional"] if key == "direction" else None)
        if not isinstance(values, list) or not values:
            raise TableError(f"{where}.{key}: expected a non-empty list, got {values!r}")
        for value in values:
            if value not in allowed:
                raise TableError(f"{where}.{key}: {value!r} is not one of {sorted(allowed)}")
        lists[key] = tuple(values)
    steps = entry.get("steps", 3)
    if not _positive(steps):
        raise TableError(f"{where}.steps: expected a positive number of steps, got {steps!r}")
    return TrainingBlock(name, lists["cell"], lists["direction"], lists["optimizer"], steps)


def _exclusion(index: int, entry: Mapping[str, Any], known: set[str]) -> Exclusion:
    where = f"exclude[{index}]"
    entry = dict(entry)
    reason = entry.pop("reason", None)
    if not isinstance(reason, str) or not reason.strip():
        raise TableError(f"{where}: every exclusion must say why (a 'reason')")
    frameworks = _names(entry.pop("frameworks", None), f"{where}.frameworks", known)
    path = entry.pop("path", None)
    if path is not None and path not in KERNEL_PATHS:
        raise TableError(f"{where}.path: {path!r} is not one of {sorted(KERNEL_PATHS)}")
    where_axes = _axes(entry, where)
    if not where_axes:
        raise TableError(f"{where}: name at least one axis the exclusion applies to")
    return Exclusion(frameworks, where_axes, reason, path)
