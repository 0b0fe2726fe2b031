"""One test per cell of a lane: ``python -m pytest -m matrix`` (the ``default`` lane).

``XFRAME_MATRIX_LANE=slow`` picks another lane. Spread over cores with pytest-xdist:
``-n auto --dist loadgroup`` keeps the cells of one Keras structure in one process, where
they share its compiled function.
"""

from __future__ import annotations

import importlib.util

import pytest

from xframe_bilstm.matrix import Cell, MatrixSession, lane_cells, load_table

from .conftest import LANE

_XDIST = importlib.util.find_spec("xdist") is not None


def _param(cell: Cell) -> object:
    marks = [pytest.mark.matrix]
    if _XDIST:
        marks.append(pytest.mark.xdist_group("-".join(map(str, cell.structure))))
    return pytest.param(cell, id=cell.id, marks=marks)


CELLS = [_param(cell) for cell in lane_cells(load_table(), LANE)[0]]


@pytest.mark.parametrize("cell", CELLS)
def test_cell(cell: Cell, matrix_session: MatrixSession) -> None:
    result = matrix_session.run(cell)
    details = [pair["message"] for pair in result.pairs if pair["message"]]
    assert result.passed, "\n".join(result.lines() + details)
