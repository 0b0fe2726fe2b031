"""Children of a torch module that the user maps to Keras layers: custom layer records.

``torch_to_keras(module, custom_modules={Scale: factory})`` ports a child of a class no
reader knows by ``factory(child)``, a Keras layer computing what the child computes (its
weights included). The record keeps the child itself, so the torch side of a comparison
runs a copy of it as it is.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from ..graph import LayerRecord


def child_factory(child: Any, custom_modules: Mapping[Any, Callable[[Any], Any]] | None) -> Any:
    """The factory mapped to ``child``'s class (by the class or its name), or None.

    Example:
        >>> import torch
        >>> child_factory(torch.nn.Identity(), {"Identity": print}) is print
        True
    """
    for key in (type(child), type(child).__name__):
        if custom_modules and key in custom_modules:
            return custom_modules[key]
    return None


def custom_child_record(
    name: str, child: Any, previous: str, factory: Callable[[Any], Any]
) -> LayerRecord:
    """The record of a mapped child: Keras layer by ``factory(child)``, torch by a copy."""
    options: dict[str, Any] = {
        "config": {},
        "registered_name": None,
        "build_torch": lambda: copy.deepcopy(child),
        "build_keras": lambda: factory(child),
    }
    return LayerRecord(name, "custom", type(child).__name__, (previous,), options)


__all__ = ["child_factory", "custom_child_record"]
