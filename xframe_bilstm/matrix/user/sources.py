"""A source spec made into what :func:`~xframe_bilstm.compare` takes.

A file is passed on as its path: compare() reads ``.keras``/``.h5`` files itself (a whole
model or a recurrent stack) and loads state_dict files without unpickling code. A factory
``package.module:attribute`` is imported with the matrix file's folder first on
``sys.path`` (as pytest finds a rootdir's modules) and called with no arguments; it may
return anything compare() takes. Each failure becomes a :class:`SourceError` naming the
source and what went wrong, which fails that source's cells only.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import XFrameError
from .specs import SourceSpec


class SourceError(XFrameError, RuntimeError):
    """A source could not be built: its factory did not import, or raised."""


def build_source(spec: SourceSpec, root: Path) -> Any:
    """The path of a file source, or what its factory returns."""
    if spec.file is not None:
        return str(spec.file)
    assert spec.factory is not None  # one of the two, checked by the config
    return call_factory(spec.factory, root, spec.name)


def call_factory(factory: str, root: Path, name: str = "") -> Any:
    """Import ``module:attribute`` (from ``root`` too) and call it.

    Example:
        >>> call_factory("collections:OrderedDict", Path("."))
        OrderedDict()
    """
    where = f"source {name!r}: factory {factory}" if name else f"factory {factory}"
    module_name, _, attribute = factory.partition(":")
    with _importable_from(root):
        try:
            target: Any = importlib.import_module(module_name)
        except Exception as error:  # a missing module, or one that fails as it imports
            raise SourceError(f"{where}: cannot import {module_name} ({_why(error)})") from error
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise SourceError(f"{where}: {module_name} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise SourceError(f"{where}: {attribute} is a {type(target).__name__}, not callable")
    try:
        return target()
    except Exception as error:
        raise SourceError(f"{where}: raised {_why(error)}") from error


@contextlib.contextmanager
def _importable_from(root: Path) -> Iterator[None]:
    entry = str(root)
    sys.path.insert(0, entry)
    importlib.invalidate_caches()  # the folder may have gained modules since last looked at
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _why(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0]


__all__ = ["SourceError", "build_source", "call_factory"]
