"""Ending the command's process as soon as its work is done.

With TensorFlow and PyTorch loaded, the interpreter's teardown (freeing every module's
objects, then the libraries' static destructors) takes 1.6–2 s on a 2-core machine, as
long as importing one of them and longer than most comparisons, and nothing in it is owed
to the user. So the command does what an orderly exit owes first (other threads finished,
``atexit`` handlers run: framework processes stopped, temporary files removed, logging
flushed; the standard streams flushed) and then ends the process at once. Only the command
line's entry points end this way, never :func:`~xframe_bilstm.cli.main` called in a program.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn


def exit_promptly(code: int | None) -> NoReturn:
    """End the process with status ``code`` (None: 0) after an orderly exit's duties."""
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken stream owes nothing
            stream.flush()
    os._exit(code or 0)
