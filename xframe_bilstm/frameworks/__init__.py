"""The frameworks a comparison can run a canonical stack on, one module per framework.

Rules, as for the adapters: a framework is imported only inside the methods of its own
class; ``available()`` looks for it without importing it; every numerics setting a run
changes (TF32, kernel choice) is applied for that run only, restored afterwards and
returned, so reports can say what ran.
"""

from __future__ import annotations

from .base import Framework, RunSpec
from .keras import KerasFramework
from .reference import ReferenceFramework
from .torch import TorchFramework

FRAMEWORKS: dict[str, type[Framework]] = {
    framework.name: framework for framework in (ReferenceFramework, TorchFramework, KerasFramework)
}

__all__ = [
    "FRAMEWORKS",
    "Framework",
    "KerasFramework",
    "ReferenceFramework",
    "RunSpec",
    "TorchFramework",
]
