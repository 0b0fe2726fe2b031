"""Reading a user matrix file (TOML) into checked specs (:mod:`.specs`).

Everything is checked when the file is read, before any framework is imported, and every
error names the file, the key and what was expected. Relative paths resolve against the
file's folder. A factory (``package.module:attribute``) is only named here; it is imported
when its cells run, in the process that runs them (:mod:`.sources`).
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ...frameworks import FRAMEWORKS
from ...frameworks.base import KERNEL_PATHS
from ..table import DTYPES
from .specs import ConfigError, InputSpec, SourceSpec, UserMatrix

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 has no TOML reader of its own
    import tomli as tomllib

# Names go into cell ids and the baseline folder's path.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+]*(-[A-Za-z0-9_.+]+)*$")
_FACTORY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_DEVICE = re.compile(r"^(cpu|gpu:\d+)$")
INPUT_DTYPES = ("int32", "int64", "float32", "float64")

_MATRIX_KEYS = {
    "name",
    "description",
    "baselines",
    "frameworks",
    "devices",
    "dtypes",
    "tf32",
    "paths",
    "seed",
    "rtol",
    "atol",
    "ratchet",
}
_SOURCE_KEYS = {"name", "file", "factory", "against", "inputs", "frameworks", "dtypes", "paths"}
_SOURCE_KEYS |= {"rtol", "atol"}
_INPUT_KEYS = {"name", "batch", "steps", "dtype", "features", "low", "high", "scale"}
_INPUT_KEYS |= {"lengths", "pad"}


def load_user_matrix(path: str | Path) -> UserMatrix:
    """Read and check the matrix file at ``path``.

    Example:
        >>> import tempfile
        >>> scratch = tempfile.TemporaryDirectory()
        >>> folder = Path(scratch.name)
        >>> _ = (folder / "m.toml").write_text('''
        ... [matrix]
        ... name = "tiny"
        ... [[sources]]
        ... name = "lstm"
        ... factory = "mymodels:build"
        ... inputs = ["x"]
        ... [[inputs]]
        ... name = "x"
        ... batch = 2
        ... steps = 5
        ... dtype = "float32"
        ... features = 3
        ... ''')
        >>> matrix = load_user_matrix(folder / "m.toml")
        >>> matrix.name, matrix.frameworks, matrix.devices, matrix.baselines.name
        ('tiny', 'auto', ('cpu',), 'baselines')
        >>> scratch.cleanup()
    """
    path = Path(path).resolve()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the matrix file ({error.strerror})") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from error
    return _Reader(path).matrix(data)


class _Reader:
    """Checks one file's values; every error names the file and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {message}")

    def expect(self, key: str, value: Any, ok: bool, expected: str) -> Any:
        if not ok:
            raise self.error(key, f"expected {expected}, got {value!r}")
        return value

    def keys(self, where: str, entry: Any, allowed: set[str]) -> Mapping[str, Any]:
        if not isinstance(entry, dict):
            raise self.error(where, f"expected a table, got {entry!r}")
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise self.error(where, f"unknown keys {unknown}; known: {sorted(allowed)}")
        return entry

    def name(self, key: str, value: Any) -> str:
        ok = isinstance(value, str) and bool(_NAME.match(value))
        return self.expect(key, value, ok, "a name of letters, digits and . _ + - (no spaces)")

    def integer(self, key: str, value: Any, low: int) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
        return self.expect(key, value, ok, f"an integer >= {low}")

    def seed(self, value: Any) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32
        return self.expect("matrix.seed", value, ok, "an integer in 0..2**32-1")

    def number(self, key: str, value: Any, check: Callable[[float], bool], what: str) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        self.expect(key, value, ok and math.isfinite(value) and check(value), what)
        return float(value)

    def names(self, key: str, value: Any, allowed: tuple[str, ...], *, empty: bool) -> tuple:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        self.expect(key, value, ok and (empty or bool(value)), "a list of names")
        unknown = [v for v in value if v not in allowed]
        if unknown:
            raise self.error(key, f"{unknown} not among {list(allowed)}")
        if len(set(value)) != len(value):
            raise self.error(key, f"repeated names in {value!r}")
        return tuple(value)

    def frameworks(self, key: str, value: Any, *, empty: bool) -> tuple[str, ...] | str:
        if value == "auto":
            return "auto"
        known = tuple(name for name in FRAMEWORKS if name != "reference")
        return self.names(key, value, known, empty=empty)

    def paths(self, key: str, value: Any) -> tuple[str, ...]:
        return self.names(key, value, tuple(KERNEL_PATHS), empty=True)

    def tolerances(self, where: str, entry: Mapping[str, Any]) -> tuple[float, float] | None:
        if ("rtol" in entry) != ("atol" in entry):
            given = "rtol" if "rtol" in entry else "atol"
            raise self.error(
                f"{where}.{given}",
                "give both rtol and atol, or neither (then the tolerance is derived from "
                "each model's rounding noise)",
            )
        if "rtol" not in entry:
            return None
        nonnegative = "a number >= 0"
        rtol = self.number(f"{where}.rtol", entry["rtol"], lambda v: v >= 0, nonnegative)
        atol = self.number(f"{where}.atol", entry["atol"], lambda v: v >= 0, nonnegative)
        return rtol, atol

    def matrix(self, data: Mapping[str, Any]) -> UserMatrix:
        self.keys("(top level)", data, {"matrix", "sources", "inputs"})
        if "matrix" not in data:
            raise self.error("matrix", "missing: the file needs a [matrix] table with a name")
        entry = self.keys("matrix", data["matrix"], _MATRIX_KEYS)
        if "name" not in entry:
            raise self.error("matrix.name", "missing: it names the lane and its baselines")
        description = entry.get("description", "")
        self.expect("matrix.description", description, isinstance(description, str), "text")
        baselines = entry.get("baselines", "baselines")
        self.expect("matrix.baselines", baselines, isinstance(baselines, str), "a folder path")
        devices = entry.get("devices", ["cpu"])
        if devices != "auto":
            ok = isinstance(devices, list) and bool(devices)
            ok = ok and all(isinstance(d, str) and _DEVICE.match(d) for d in devices)
            self.expect("matrix.devices", devices, ok, '"auto" or a list of "cpu", "gpu:N"')
        tf32 = entry.get("tf32", False)
        self.expect("matrix.tf32", tf32, isinstance(tf32, bool), "true or false")
        ratchet = entry.get("ratchet", 4.0)
        ratchet = self.number("matrix.ratchet", ratchet, lambda v: v > 1, "a number above 1")
        inputs = self.inputs(data.get("inputs", []))
        matrix = UserMatrix(
            path=self.path,
            name=self.name("matrix.name", entry["name"]),
            description=description,
            baselines=(self.path.parent / baselines).resolve(),
            frameworks=self.frameworks(
                "matrix.frameworks", entry.get("frameworks", "auto"), empty=False
            ),
            devices=("auto",) if devices == "auto" else tuple(devices),
            dtypes=self.names(
                "matrix.dtypes", entry.get("dtypes", ["float32"]), DTYPES, empty=False
            ),
            tf32=tf32,
            seed=self.seed(entry.get("seed", 0)),
            tolerances=self.tolerances("matrix", entry),
            ratchet=ratchet,
            sources=(),
            inputs=inputs,
            paths=self.paths("matrix.paths", entry.get("paths", [])),
        )
        sources = self.sources(data.get("sources"), matrix)
        return dataclasses.replace(matrix, sources=sources)

    def inputs(self, entries: Any) -> tuple[InputSpec, ...]:
        self.expect("inputs", entries, isinstance(entries, list), "[[inputs]] tables")
        specs: list[InputSpec] = []
        for index, entry in enumerate(entries):
            where = f"inputs[{index}]"
            entry = self.keys(where, entry, _INPUT_KEYS)
            for key in ("name", "batch", "steps", "dtype"):
                if key not in entry:
                    raise self.error(f"{where}.{key}", "missing")
            name = self.name(f"{where}.name", entry["name"])
            where = f"inputs[{name}]"
            if any(spec.name == name for spec in specs):
                raise self.error(f"{where}.name", "declared twice")
            specs.append(self.input(where, name, entry))
        return tuple(specs)

    def input(self, where: str, name: str, entry: Mapping[str, Any]) -> InputSpec:
        batch = self.integer(f"{where}.batch", entry["batch"], 1)
        steps = self.integer(f"{where}.steps", entry["steps"], 1)
        dtype = self.expect(
            f"{where}.dtype", entry["dtype"], entry["dtype"] in INPUT_DTYPES, str(INPUT_DTYPES)
        )
        ids = dtype.startswith("int")
        allowed = {"low", "high"} if ids else {"features", "scale"}
        wrong = sorted(({"low", "high", "features", "scale"} - allowed) & set(entry))
        if wrong:
            kind = "integer ids" if ids else "float features"
            raise self.error(f"{where}.{wrong[0]}", f"does not apply to {kind} ({dtype})")
        features = low = high = None
        scale = 1.0
        if ids:
            if "high" not in entry:
                raise self.error(f"{where}.high", "missing: ids are drawn from [low, high)")
            low = self.integer(f"{where}.low", entry.get("low", 1), 0)
            high = self.integer(f"{where}.high", entry["high"], low + 1)
        else:
            if "features" not in entry:
                raise self.error(f"{where}.features", "missing: float inputs are (B, T, features)")
            features = self.integer(f"{where}.features", entry["features"], 1)
            scale = self.number(f"{where}.scale", entry.get("scale", 1.0), lambda v: v > 0, "> 0")
        lengths = entry.get("lengths")
        if lengths is not None:
            ok = isinstance(lengths, list) and bool(lengths)
            ok = ok and all(isinstance(n, int) and not isinstance(n, bool) for n in lengths)
            ok = ok and all(1 <= n <= steps for n in lengths)
            self.expect(f"{where}.lengths", lengths, ok, f"a list of integers in 1..{steps}")
            lengths = tuple(lengths)
        pad = entry.get("pad", 0)
        if ids:
            pad = self.integer(f"{where}.pad", pad, 0) if "pad" in entry else 0
            if lengths is not None and low is not None and high is not None and low <= pad < high:
                raise self.error(
                    f"{where}.pad",
                    f"{pad} is also a valid id in [{low}, {high}): a model that masks padding "
                    "by its value would mask valid steps too; draw ids from above it (low)",
                )
        else:
            pad = self.number(f"{where}.pad", pad, lambda v: True, "a number")
        return InputSpec(name, batch, steps, dtype, features, low, high, scale, lengths, pad)

    def sources(self, entries: Any, matrix: UserMatrix) -> tuple[SourceSpec, ...]:
        if entries is None:
            raise self.error("sources", "missing: declare at least one [[sources]] table")
        ok = isinstance(entries, list) and bool(entries)
        self.expect("sources", entries, ok, "one or more [[sources]] tables")
        specs: list[SourceSpec] = []
        for index, entry in enumerate(entries):
            where = f"sources[{index}]"
            entry = self.keys(where, entry, _SOURCE_KEYS)
            if "name" not in entry:
                raise self.error(f"{where}.name", "missing")
            name = self.name(f"{where}.name", entry["name"])
            where = f"sources[{name}]"
            if any(spec.name == name for spec in specs):
                raise self.error(f"{where}.name", "declared twice")
            specs.append(self.source(where, name, entry, matrix))
        declared = {spec.name for spec in specs}
        for spec in specs:
            if spec.against is not None and spec.against not in declared - {spec.name}:
                raise self.error(
                    f"sources[{spec.name}].against",
                    f"{spec.against!r} is not another source; sources: {sorted(declared)}",
                )
        return tuple(specs)

    def source(
        self, where: str, name: str, entry: Mapping[str, Any], matrix: UserMatrix
    ) -> SourceSpec:
        if ("file" in entry) == ("factory" in entry):
            raise self.error(where, 'give exactly one of file = "PATH" or factory = "module:name"')
        file = factory = None
        if "file" in entry:
            text = self.expect(
                f"{where}.file", entry["file"], isinstance(entry["file"], str), "a path"
            )
            file = (self.path.parent / text).resolve()
            if not file.is_file():
                raise self.error(f"{where}.file", f"no such file: {file}")
        else:
            value = entry["factory"]
            ok = isinstance(value, str) and bool(_FACTORY.match(value))
            factory = self.expect(f"{where}.factory", value, ok, '"package.module:callable"')
        against = entry.get("against")
        if against is not None:
            self.expect(f"{where}.against", against, isinstance(against, str), "a source's name")
        groups = self.input_groups(f"{where}.inputs", entry.get("inputs"), matrix)
        frameworks = None
        if "frameworks" in entry:
            frameworks = self.frameworks(
                f"{where}.frameworks", entry["frameworks"], empty=against is not None
            )
        dtypes = None
        if "dtypes" in entry:
            dtypes = self.names(f"{where}.dtypes", entry["dtypes"], DTYPES, empty=False)
        paths = self.paths(f"{where}.paths", entry["paths"]) if "paths" in entry else None
        tolerances = self.tolerances(where, entry)
        return SourceSpec(
            name, file, factory, groups, against, frameworks, dtypes, tolerances, paths
        )

    def input_groups(self, key: str, value: Any, matrix: UserMatrix) -> tuple[tuple[str, ...], ...]:
        """Each entry names one input, or a list of them for a model with several."""
        if value is None:
            raise self.error(key, "missing: name the [[inputs]] this source runs on")
        ok = isinstance(value, list) and bool(value)
        self.expect(key, value, ok, "a list of input names (or of lists of them)")
        declared = {spec.name: spec for spec in matrix.inputs}
        groups: list[tuple[str, ...]] = []
        for item in value:
            group = (item,) if isinstance(item, str) else item
            ok = isinstance(group, (list, tuple)) and bool(group)
            self.expect(key, item, ok and all(isinstance(n, str) for n in group), "input names")
            unknown = [n for n in group if n not in declared]
            if unknown:
                raise self.error(key, f"{unknown} not among the [[inputs]] {sorted(declared)}")
            specs = [declared[n] for n in group]
            if (
                len({spec.batch for spec in specs}) > 1
                or len({tuple(spec.row_lengths() or ()) for spec in specs if spec.lengths}) > 1
            ):
                raise self.error(
                    key, f"{list(group)}: one model's inputs need one batch and lengths"
                )
            groups.append(tuple(group))
        if len(set(groups)) != len(groups):
            raise self.error(key, f"repeated inputs in {value!r}")
        return tuple(groups)


__all__ = ["ConfigError", "InputSpec", "SourceSpec", "UserMatrix", "load_user_matrix"]
