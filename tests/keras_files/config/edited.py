"""A saved ``.keras`` file with its configuration edited, for refusals of files from
elsewhere."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def edited(
    source: Path, target: Path, edit: Callable[[dict[str, Any]], None], name: str | None = None
) -> Path:
    """A copy of ``source`` with ``edit(entry)`` applied to each layer's entry (only layer
    ``name``'s where given)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                for entry in config["config"]["layers"]:
                    if name is None or entry["config"]["name"] == name:
                        edit(entry)
                data = json.dumps(config).encode()
            new.writestr(item, data)
    return target


__all__ = ["edited"]
