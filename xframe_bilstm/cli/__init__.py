"""Command line: ``python -m xframe_bilstm [compare] [options]`` (or ``python
scripts/compare.py``) compares models (:mod:`.compare`); ``python -m xframe_bilstm matrix``
runs the regression matrix (:mod:`.matrix`). Those entry points and the installed
``xframe-bilstm`` command call :func:`run`; programs call :func:`main`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

from .compare import compare_main
from .ending import exit_promptly
from .matrix import matrix_main
from .openmp import wait_passively


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m xframe_bilstm [compare] [options]`` or ``python -m xframe_bilstm matrix``."""
    wait_passively()  # before any framework loads (see .openmp)
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["matrix"]:
        return matrix_main(arguments[1:])
    if arguments[:1] == ["compare"]:
        arguments = arguments[1:]
    return compare_main(arguments)


def run() -> NoReturn:
    """The command: :func:`main`, then the process ends without the interpreter's teardown
    of the frameworks (:mod:`.ending`)."""
    exit_promptly(main())


if __name__ == "__main__":
    run()
