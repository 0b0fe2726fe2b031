"""Files written all or nothing: a temporary file in the target's folder, then a rename.

Rules of this module:

- Every file the tool writes (reports, plots, exported models) goes through
  :func:`write_atomically`. The data is written to a temporary file next to the target,
  flushed to disk, and renamed over the target with :func:`os.replace`, which is atomic on
  one file system: a reader (or a run that was interrupted) sees the previous file or the
  whole new one, never a part.
- Whatever goes wrong before the rename (an exception, ``KeyboardInterrupt``, a full disk)
  removes the temporary file and leaves the previous file as it was.
- The new file keeps the permissions of the file it replaces, or gets those a plain
  ``open(path, "w")`` would give it (0o666 less the umask), not the owner-only ones of a
  temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, rather than around
    # every write, where another thread could create a file in between.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _mode_for(target: Path) -> int:
    """The permissions the new file should get: the old file's, else open()'s default."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_stream(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary stream whose content replaces ``path`` only when the block ends normally.

    Example:
        >>> import pathlib, tempfile
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "report.txt"
        >>> with atomic_stream(target) as stream:
        ...     _ = stream.write(b"all or nothing")
        >>> target.read_bytes()
        b'all or nothing'
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            # On disk before the rename, so a crash cannot leave a renamed but empty file.
            os.fsync(stream.fileno())
        os.chmod(temporary, _mode_for(target))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_atomically(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Write ``data`` (bytes, or text as UTF-8) to ``path``: all or nothing.

    Example:
        >>> import pathlib, tempfile
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "report.json"
        >>> write_atomically(target, '{"passed": true}')
        >>> target.read_text()
        '{"passed": true}'
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_stream(path) as stream:
        stream.write(payload)


def write_with(path: str | os.PathLike[str], writer: Callable[[IO[bytes]], object]) -> None:
    """Call ``writer(stream)`` and put what it wrote at ``path``: all or nothing.

    For writers that stream their output (a plot, a serialized model) rather than return
    bytes; an exception raised by ``writer`` half-way leaves the previous file intact.
    """
    with atomic_stream(path) as stream:
        writer(stream)


__all__ = ["atomic_stream", "write_atomically", "write_with"]
