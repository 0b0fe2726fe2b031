"""Test-session setup shared by the tests, the doctests in the package and the docs."""

import contextlib

# torch before TensorFlow: importing them the other way round can crash.
with contextlib.suppress(ImportError):
    import torch  # noqa: F401
