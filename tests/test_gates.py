from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm import WeightShapeError, reorder_gates


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        pytest.param("ifco", "iofc", "iofc", id="keras_lstm-to-onnx"),
        pytest.param("iofc", "ifco", "ifco", id="onnx_lstm-to-keras"),
        pytest.param("zrh", "rzn", "rzh", id="keras_gru-to-torch"),
        pytest.param("rzn", "zrh", "zrh", id="torch_gru-to-keras"),
        pytest.param("ifco", "ifgo", "ifco", id="keras_lstm-to-torch-is-identity"),
    ],
)
def test_reorder_moves_named_blocks(source: str, target: str, expected: str) -> None:
    # Each block holds its own letter twice, so the result spells the block order.
    array = np.array([letter for letter in source for _ in range(2)])
    moved = reorder_gates(array, source, target)
    synonyms = str.maketrans({"g": "c", "n": "h"})
    assert "".join(moved[::2]).translate(synonyms) == expected.translate(synonyms)


def test_reorder_along_axis_keeps_other_axes() -> None:
    array = np.arange(12).reshape(3, 4)  # (D, G·H) with G=4, H=1
    moved = reorder_gates(array, "ifco", "iofc", axis=1)
    np.testing.assert_array_equal(moved, array[:, [0, 3, 1, 2]])


def test_reorder_round_trip_is_exact() -> None:
    array = np.random.default_rng(0).standard_normal((5, 12))
    there = reorder_gates(array, "zrh", "rzn", axis=1)
    np.testing.assert_array_equal(reorder_gates(there, "rzn", "zrh", axis=1), array)


def test_reorder_rejects_uneven_axis() -> None:
    with pytest.raises(WeightShapeError, match="does not split into 4 gate blocks"):
        reorder_gates(np.zeros(10), "ifco", "iofc")


@pytest.mark.parametrize(("source", "target"), [("ifco", "izfo"), ("ifco", "iifo")])
def test_reorder_rejects_mismatched_orders(source: str, target: str) -> None:
    with pytest.raises(ValueError):
        reorder_gates(np.zeros(4), source, target)
