"""The command line, through main() and once as a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("keras")

from xframe_bilstm.cli import main

pytestmark = [pytest.mark.keras, pytest.mark.torch]

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--steps", "4", "--units", "3"], id="default-bilstm"),
        pytest.param(["--cell", "gru", "--direction", "backward", "--steps", "3"], id="gru-back"),
        pytest.param(["--cell", "simple_rnn", "--merge-mode", "ave", "--steps", "3"], id="rnn-ave"),
    ],
)
def test_main_reports_every_pair_passing(argv: list[str], capsys) -> None:
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for pair in ("keras vs reference", "torch vs reference", "torch vs keras"):
        assert f"{pair}: agree" in printed
    assert "FAILED" not in printed and printed.count("PASSED | output") == 3


def test_main_rejects_bad_sizes(capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--units", "0"])
    assert raised.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err


def test_script_runs_as_a_process() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compare.py"), "--steps", "5"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "torch vs keras: agree" in result.stdout
