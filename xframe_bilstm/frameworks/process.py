"""Runs in another Python process, for settings a framework reads once at import.

TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` when it is imported, so a run with the other
setting needs a process started with it. :func:`run_elsewhere` keeps one such process per
environment for the life of this one (importing TensorFlow takes seconds; a matrix makes
hundreds of runs) and sends it runs one at a time. :func:`call_elsewhere` sends it any
function of this package by reference (the Keras backend columns' gradients go so).

The two processes talk in pickles over the child's standard input and output. Both ends
are this package, started by this process, so nothing untrusted is unpickled; the child's
own standard output goes to standard error, so nothing a framework prints can corrupt the
stream.
"""

from __future__ import annotations

import atexit
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..reference import Reading
from .base import RunSpec

Outputs = tuple[tuple[np.ndarray, ...], dict[str, object]]


class ProcessRunError(RuntimeError):
    """The other process failed a run (its error, by type name and message) or died."""


class _Child:
    def __init__(self, environment: Mapping[str, str]) -> None:
        self.lock = threading.Lock()
        # The child imports this package from where this process found it.
        root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"from {__name__} import serve; serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, **environment, "PYTHONPATH": path},
        )

    def call(self, request: tuple[Any, ...]) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        with self.lock:
            try:
                pickle.dump(request, self.process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                self.process.stdin.flush()
                status, payload = pickle.load(self.process.stdout)
            except (BrokenPipeError, EOFError) as error:
                code = self.process.poll()
                raise ProcessRunError(
                    f"the process running {_named(request[0])} exited (status {code}) mid-run"
                ) from error
        if status == "refused":  # a refusal there is one here: the run is left out
            from ..errors import UnsupportedFeatureError

            raise UnsupportedFeatureError(payload)
        if status == "error":
            raise ProcessRunError(payload)
        return payload

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


_CHILDREN: dict[tuple[tuple[str, str], ...], _Child] = {}
_CHILDREN_LOCK = threading.Lock()


def run_elsewhere(
    environment: Mapping[str, str],
    framework: type,
    stack: Reading,
    x: np.ndarray,
    spec: RunSpec,
    *,
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
) -> Outputs:
    """Run ``framework``'s default path in a process whose environment adds ``environment``.

    The class goes to the child by reference (its module and name), so the child imports
    the framework module itself and this module imports none."""
    outputs, settings = call_elsewhere(
        environment, _run, framework, stack, x, spec, initial_states, lengths
    )
    return outputs, settings


def call_elsewhere(environment: Mapping[str, str], function: Any, *args: Any) -> Any:
    """``function(*args)`` in the process whose environment adds ``environment`` (started
    on first use and kept); ``function`` is a module-level function or class of this
    package, sent by reference.

    Raises:
        ProcessRunError: the call raised there (its type and first line), or the process died.
    """
    key = tuple(sorted(environment.items()))
    with _CHILDREN_LOCK:
        child = _CHILDREN.get(key)
        if child is None or child.process.poll() is not None:
            child = _CHILDREN[key] = _Child(environment)
    return child.call((function, args))


def _run(
    framework: type,
    stack: Reading,
    x: np.ndarray,
    spec: RunSpec,
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
) -> Outputs:
    """In the child: one run of ``framework``'s default path."""
    outputs, settings = framework().run(
        stack, x, spec, initial_states=initial_states, lengths=lengths
    )
    return outputs, settings


def _named(function: Any) -> str:
    return str(getattr(function, "__qualname__", function))


@atexit.register
def close_all() -> None:
    """Stop every process started by :func:`run_elsewhere`."""
    with _CHILDREN_LOCK:
        children = list(_CHILDREN.values())
        _CHILDREN.clear()
    for child in children:
        child.close()


def _serve(requests: BinaryIO, replies: BinaryIO) -> None:
    from ..errors import UnsupportedFeatureError

    while True:
        try:
            function, args = pickle.load(requests)
        except EOFError:
            return
        try:
            reply: tuple[str, Any] = ("ok", function(*args))
        except UnsupportedFeatureError as error:
            reply = ("refused", str(error).splitlines()[0])
        except Exception as error:  # the parent records it in the run, as for any run
            reply = ("error", f"{type(error).__name__}: {error}".splitlines()[0])
        pickle.dump(reply, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()


def serve() -> None:
    """The child's main loop: runs until the parent closes its standard input."""
    # Keep the real standard output for replies; whatever else is printed goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _serve(sys.stdin.buffer, replies)
