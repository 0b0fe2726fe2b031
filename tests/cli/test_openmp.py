"""The command line lets idle OpenMP threads sleep, set before any framework loads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from xframe_bilstm.cli.openmp import WAIT_POLICY, wait_passively

# Runs the command line in a fresh process (OpenMP reads the policy once, when it loads) and
# prints the policy it ran under and whether a framework was loaded when it was set.
_PROBE = """
import os, sys
from xframe_bilstm.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
print(os.environ.get("OMP_WAIT_POLICY"), "torch" in sys.modules, "tensorflow" in sys.modules)
"""


def _probe(environment: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env=environment, capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()[-1].split()  # after the help text


def test_the_command_line_sets_passive_waiting_before_any_framework_loads():
    environment = {k: v for k, v in os.environ.items() if k != WAIT_POLICY}
    assert _probe(environment) == ["PASSIVE", "False", "False"]


def test_a_policy_the_user_set_is_kept():
    assert _probe({**os.environ, WAIT_POLICY: "ACTIVE"})[0] == "ACTIVE"


def test_wait_passively_keeps_an_existing_choice(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(WAIT_POLICY, raising=False)
    wait_passively()
    assert os.environ[WAIT_POLICY] == "PASSIVE"
    monkeypatch.setenv(WAIT_POLICY, "ACTIVE")
    wait_passively()
    assert os.environ[WAIT_POLICY] == "ACTIVE"
