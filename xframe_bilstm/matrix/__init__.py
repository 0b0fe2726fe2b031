"""The regression matrix: a declared table of configurations, run on every framework.

``table.toml`` declares the axes (cell, direction, merge mode, layers, returns, masks,
sequence length, batch, dtype, TF32, weight scale, sizes, kernel paths), the lanes that
select subsets of them (``default`` on CPU for every push, ``slow``, ``gpu``) and the runs
a framework cannot do, with the reason. Each cell runs through
:func:`~xframe_bilstm.compare` and is checked against the tolerance derived for its model
and against its committed baseline (:mod:`~xframe_bilstm.matrix.ratchet`).

    python -m xframe_bilstm matrix --lane default --json cells.json --junit cells.xml
    python -m xframe_bilstm matrix --lane slow --shard 2/4
    python -m xframe_bilstm matrix --lane default --update-baselines
    python -m pytest -m matrix -n auto --dist loadgroup   # the same cells, one test each

A user matrix (:mod:`~xframe_bilstm.matrix.user`) declares your own models, inputs and
axes in a TOML file and runs through the same session, records and ratchet::

    python -m xframe_bilstm matrix --config matrix.toml --update-baselines

Importing this package imports no framework.
"""

from __future__ import annotations

from .cells import Cell, cell_lengths, cell_stack, lane_cells
from .protocol import MatrixCell, Request
from .ratchet import Baseline, Drift, load_baseline, version_key
from .results import CellResult, LaneResult
from .runner import run_lane
from .session import MatrixSession
from .shards import shard
from .table import Table, TableError, load_table
from .user import ConfigError, UserCell, UserMatrix, load_user_matrix, user_cells

__all__ = [
    "Baseline",
    "Cell",
    "CellResult",
    "ConfigError",
    "Drift",
    "LaneResult",
    "MatrixCell",
    "MatrixSession",
    "Request",
    "Table",
    "TableError",
    "UserCell",
    "UserMatrix",
    "cell_lengths",
    "cell_stack",
    "lane_cells",
    "load_baseline",
    "load_table",
    "load_user_matrix",
    "run_lane",
    "shard",
    "user_cells",
    "version_key",
]
