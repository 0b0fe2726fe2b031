"""TensorFlow's C++ start-up lines, kept off the command line's standard error.

Importing TensorFlow prints INFO lines from its C++ libraries (oneDNN is on, no CUDA
drivers, CPU instructions) and, on a machine without a GPU, an error line "failed call to
cuInit" when devices are listed. ``TF_CPP_MIN_LOG_LEVEL`` hides those TensorFlow prints
after it has started its logging, but the first lines come from the libraries' static
initialisers, before that setting is read. So the command line sets the level and also
passes its standard error (the file descriptor, which child processes share) through a
filter that drops exactly those lines and forwards everything else as it comes. A user who
sets ``TF_CPP_MIN_LOG_LEVEL`` chooses what to see: then nothing is filtered.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
# 2: TensorFlow prints no INFO or WARNING lines once its logging has started; errors stay.
QUIET_LEVEL = "2"

# Lines that say nothing about the comparison: absl INFO/WARNING lines printed before
# TensorFlow reads the level, absl's note about them, and the error of a machine with no GPU
# (the device list already says which devices ran).
NOISE = re.compile(
    rb"^(?:[IW]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    rb"STDERR"
    rb"|E\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] failed call to cuInit: )"
)


def is_noise(line: bytes) -> bool:
    """Whether ``line`` is one of TensorFlow's start-up lines that the command line drops.

    Example:
        >>> is_noise(b"I0000 00:00:1796327824.033788    9090 cudart_stub.cc:31] Could not "
        ...          b"find cuda drivers on your machine, GPU will not be used.")
        True
        >>> is_noise(b"E0000 00:00:1.5    9090 allocator.cc:12] out of memory")
        False
    """
    return NOISE.match(line) is not None


@contextlib.contextmanager
def quiet_tensorflow() -> Iterator[TextIO]:
    """Within: TensorFlow's start-up lines are dropped from standard error (see the module).

    Yields a stream onto the unfiltered standard error, for what must reach it directly (a
    progress bar on a terminal). Filters nothing when the user has set
    ``TF_CPP_MIN_LOG_LEVEL``, or when standard error has no file descriptor.
    """
    target = _descriptor()
    if LOG_LEVEL in os.environ or target is None:
        yield sys.stderr
        return
    os.environ[LOG_LEVEL] = QUIET_LEVEL
    restore = os.dup(target)
    direct = os.fdopen(os.dup(target), "w", buffering=1)
    read, write = os.pipe()
    _flush()
    os.dup2(write, target)
    os.close(write)
    # The thread owns its descriptors: child processes that inherited the pipe may still
    # write to it after this block, and their lines still go out, filtered.
    forwarder = threading.Thread(target=_forward, args=(read, os.dup(restore)), daemon=True)
    forwarder.start()
    try:
        yield direct
    finally:
        _flush()
        direct.close()
        os.dup2(restore, target)  # closes this process's end of the pipe
        os.close(restore)
        forwarder.join(timeout=1.0)
        os.environ.pop(LOG_LEVEL, None)


def _descriptor() -> int | None:
    """The file descriptor of this process's standard error, or None."""
    try:
        return sys.__stderr__.fileno() if sys.__stderr__ is not None else None
    except (AttributeError, OSError, ValueError):  # replaced by a stream without one
        return None


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _forward(read: int, write: int) -> None:
    """Copy lines from ``read`` to ``write`` as they come, without the noise."""
    pending = b""
    try:
        while chunk := os.read(read, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not is_noise(line))
            if kept:
                os.write(write, kept)
        if pending and not is_noise(pending):
            os.write(write, pending)
    except OSError:  # the original standard error is gone: nothing left to forward to
        pass
    finally:
        os.close(read)
        os.close(write)
