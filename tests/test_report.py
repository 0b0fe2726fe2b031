"""A report read by a person: ``print(report)`` shows what the command line prints."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from xframe_bilstm import DirectionWeights, RecurrentLayer, RecurrentStack, compare

pytestmark = [pytest.mark.torch]


def _stack(recurrent: float) -> RecurrentStack:
    w = DirectionWeights(np.full((2, 3), 0.5), np.full((3, 3), recurrent), np.zeros(3))
    return RecurrentStack((RecurrentLayer("simple_rnn", 2, 3, (w,), recurrent_activation=None),))


def test_printing_a_report_shows_the_verdict_and_every_pair() -> None:
    report = compare(_stack(0.1), frameworks=["torch"])
    text = str(report)
    lines = text.splitlines()
    assert lines[0].endswith(": equivalent")
    assert "PASSED | torch[cpu,float32] vs reference[cpu,float64]" in text
    assert lines[-1] == report.tolerance_note
    assert lines == [*report.header(), *lines[2:]]
    assert all(line in lines for line in report.lines())


def test_a_failing_report_says_so_first() -> None:
    report = compare(_stack(0.1), against=_stack(0.2), frameworks=["torch"])
    assert not report
    assert str(report).splitlines()[0].endswith(": NOT equivalent")
    assert any(line.startswith("FAILED | ") for line in str(report).splitlines())
