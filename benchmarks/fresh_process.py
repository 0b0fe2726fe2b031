"""What the benchmarks' fresh measuring processes share: their environment, and the peak
of their resident memory during a step.

A thread polls the resident size every 2 ms while the step runs; the peak is the largest
size it saw (and the size at the end). Used by ``port_speed.py`` and
``whole_model_speed.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[1]


def environment(cache: Path) -> dict[str, str]:
    """The environment of a measuring process, with the package's bytecode compiled.

    An installed package has its bytecode (pip compiles it); a checkout run with
    ``PYTHONDONTWRITEBYTECODE`` would compile every module again in every fresh process.
    The bytecode goes to ``cache``, compiled once here.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "xframe_bilstm")],
        env=env,
        check=True,
        capture_output=True,
    )
    return env


def rss() -> int:
    """This process's resident size in bytes (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


class Peak:
    """``with Peak() as peak: ...``; then ``peak.peak`` is the largest resident size seen."""

    def __enter__(self) -> Peak:
        self.peak, self.running = rss(), True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss())
            time.sleep(0.002)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, rss())
