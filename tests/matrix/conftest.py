"""The matrix's per-cell tests run only when asked for (``-m matrix``): ``.ci/run`` runs
the same cells through ``python -m xframe_bilstm matrix``, with their JSON record."""

from __future__ import annotations

import os

import pytest

from xframe_bilstm.matrix import MatrixSession, lane_cells, load_table

LANE = os.environ.get("XFRAME_MATRIX_LANE", "default")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the per-cell tests out unless the marker expression names them."""
    if "matrix" in (config.getoption("markexpr") or ""):
        return
    kept = [item for item in items if item.get_closest_marker("matrix") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


@pytest.fixture(scope="session")
def matrix_session() -> MatrixSession:
    """The lane's frameworks imported once per process, with the baseline for their versions."""
    pytest.importorskip("torch")
    pytest.importorskip("keras")
    table = load_table()
    cells, _ = lane_cells(table, LANE)
    session = MatrixSession(table, LANE)
    session.prepare({name for cell in cells for name in cell.frameworks})
    return session
