"""User matrices: your own models, inputs and axes, run like the built-in matrix.

A TOML file declares the sources (model files, or factories such as
``mypkg.models:build_tagger``), the inputs they run on, the frameworks, devices, dtypes
and tolerances, and where the baselines live (docs/ci.md has the schema)::

    python -m xframe_bilstm matrix --config ci/matrix.toml --update-baselines
    python -m xframe_bilstm matrix --config ci/matrix.toml --jobs 2 --json cells.json

Its cells run through the same session, records, shards and baseline ratchet as the
table's. Importing this package imports no framework.
"""

from __future__ import annotations

from .cells import UserCell, user_cells
from .config import load_user_matrix
from .inputs import input_arrays
from .sources import SourceError, build_source, call_factory
from .specs import ConfigError, InputSpec, SourceSpec, UserMatrix

__all__ = [
    "ConfigError",
    "InputSpec",
    "SourceError",
    "SourceSpec",
    "UserCell",
    "UserMatrix",
    "build_source",
    "call_factory",
    "input_arrays",
    "load_user_matrix",
    "user_cells",
]
