"""Test-session setup shared by the tests, the doctests in the package and the docs."""

import contextlib
import importlib

import numpy as np
import pytest

# torch before TensorFlow: importing them the other way round can crash.
with contextlib.suppress(ImportError):
    import torch  # noqa: F401


@pytest.fixture(autouse=True)
def _doctest_frameworks(doctest_namespace: dict) -> None:
    """Give docstring examples numpy, and torch and keras where installed (torch first)."""
    doctest_namespace["np"] = np
    for name in ("torch", "keras"):
        with contextlib.suppress(ImportError):
            doctest_namespace[name] = importlib.import_module(name)
