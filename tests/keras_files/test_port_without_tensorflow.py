"""Files saved by Keras 3 (.keras, .h5) and tf_keras (.h5), ported where TensorFlow cannot
be imported, match what Keras itself computed on padded batches."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("keras")

pytestmark = [pytest.mark.keras, pytest.mark.torch]

CASES = [
    "k3-classifier.keras",
    "k3-classifier.h5",
    "k3-plain-layers.keras",
    "k3-functional.keras",
    "k3-functional.h5",
    "k3-fixed-length.keras",
    "k2-classifier.h5",
    "k2-time-major.h5",
    "k2-concatenated-masks.h5",
    "k2-cudnn.h5",
]


def test_every_saved_case_is_ported(saved_cases) -> None:
    assert sorted(saved_cases) == sorted(CASES)


def test_no_framework_was_imported_by_the_port(ported_cases) -> None:
    assert ported_cases["frameworks"] == []


@pytest.mark.parametrize("case", CASES)
def test_port_matches_keras_on_padded_batches(ported_cases, case: str) -> None:
    result = ported_cases[case]
    assert "error" not in result, result.get("error")
    for actual_shape, expected_shape in result["shapes"]:
        assert actual_shape == expected_shape
    assert result["module"] == "KerasModel"
    assert max(result["errors"]) <= result["tolerance"], result
