"""The command ends its process at once, after what an orderly exit owes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "compare.py"

# A process with an atexit handler, unflushed output on both streams and a thread still
# working, ended by exit_promptly.
_PROGRAM = """
import atexit, sys, threading, time
from xframe_bilstm.cli.ending import exit_promptly
atexit.register(lambda: print("atexit ran"))
worker = threading.Thread(target=lambda: (time.sleep(0.2), print("thread done")))
worker.start()
sys.stdout.write("no newline yet")
sys.stderr.write("on stderr")
exit_promptly(3)
print("never")
"""


def test_exit_promptly_finishes_threads_runs_atexit_and_flushes_before_it_ends():
    done = subprocess.run([sys.executable, "-c", _PROGRAM], capture_output=True, text=True)
    assert done.returncode == 3
    assert done.stdout == "no newline yetthread done\natexit ran\n"
    assert done.stderr == "on stderr"


def test_the_command_ends_with_mains_status_and_its_last_line(tmp_path):
    # main returns 2 for a file it cannot read; the line saying why must still come out.
    missing = tmp_path / "missing.keras"
    for command in (["-m", "xframe_bilstm"], [str(SCRIPT)]):
        done = subprocess.run(
            [sys.executable, *command, "--keras", str(missing)], capture_output=True, text=True
        )
        assert done.returncode == 2
        assert done.stderr.strip().endswith(
            f"{missing}: cannot read the file ([Errno 2] No such file or directory: '{missing}')"
        )
