"""Read Keras model files without Keras or TensorFlow: h5py, zipfile and json only.

- :func:`read_model` reads a ``.keras`` archive (Keras 3) or an ``.h5`` file (Keras 2,
  tf_keras or Keras 3) into a :class:`~xframe_bilstm.graph.ModelGraph`.
- :func:`read_spec` reads only the configuration (no weights), e.g. for :func:`~xframe_bilstm.lint`.

The kind of file is told by its first bytes (a zip or an HDF5 signature), not its name.
Nothing in a file is executed: no pickle, no Lambda code, no custom objects. A file that
is truncated, corrupt or inconsistent raises an
:class:`~xframe_bilstm.errors.XFrameError` naming the file and what is wrong, never a bare
``KeyError`` or ``OSError`` from the readers underneath.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import UnsupportedFeatureError, XFrameError
from ..graph import ModelGraph
from .config import ModelSpec

_HDF5 = b"\x89HDF\r\n\x1a\n"
_ZIP = b"PK\x03\x04"


def is_model_path(obj: Any) -> bool:
    """Whether ``obj`` is a path (str or PathLike) rather than a model object.

    Example:
        >>> is_model_path("model.keras"), is_model_path(3)
        (True, False)
    """
    return isinstance(obj, (str, os.PathLike))


def file_format(path: str | Path) -> str:
    """``"keras"`` (a zip archive) or ``"h5"`` (HDF5), from the file's first bytes."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as error:
        raise UnsupportedFeatureError(f"{path}: cannot read the file ({error})") from error
    if head.startswith(_ZIP):
        return "keras"
    if head == _HDF5:
        return "h5"
    # HDF5 may start after a user block at 512, 1024, ... bytes.
    with open(path, "rb") as handle:
        for offset in (512, 1024, 2048, 4096):
            handle.seek(offset)
            if handle.read(8) == _HDF5:
                return "h5"
    raise UnsupportedFeatureError(
        f"{path}: neither a .keras archive nor an HDF5 (.h5) file; save the model with "
        "model.save('model.keras') or model.save('model.h5')"
    )


# What the readers underneath (zipfile, h5py, json, int() of a config value...) raise on a
# damaged or forged file.
_DAMAGE = (
    KeyError,
    IndexError,
    TypeError,
    ValueError,
    AttributeError,
    OSError,
    EOFError,
    RuntimeError,
    RecursionError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
)


@contextlib.contextmanager
def _reading(path: str | Path) -> Iterator[None]:
    """Turn the readers' own exceptions into one that names the file and what is wrong."""
    try:
        yield
    except XFrameError:
        raise
    except json.JSONDecodeError as error:
        raise UnsupportedFeatureError(f"{path}: its configuration is not JSON ({error})") from error
    except _DAMAGE as error:
        raise UnsupportedFeatureError(
            f"{path}: damaged or inconsistent model file ({type(error).__name__}: {error})"
        ) from error


def read_spec(path: str | Path, *, strict: bool = True) -> ModelSpec:
    """The parsed configuration of a model file, without reading its weights.

    ``strict=False`` keeps unsupported layers (see :func:`~.config.parse_layers`).
    """
    with _reading(path):
        if file_format(path) == "keras":
            from .archive import read_archive_spec

            return read_archive_spec(path, strict=strict)
        from .h5 import read_h5_spec

        return read_h5_spec(path, strict=strict)[0]


def read_model(path: str | Path, *, map_weights: bool = False) -> ModelGraph:
    """Read a Keras model file into a framework-free model graph.

    ``map_weights``: weights stored as one unfiltered run of bytes (as Keras saves them)
    come back as read-only views of the file mapped into memory, not as copies. For a caller
    that copies them right away and then drops the graph, as a port does: the file must not
    change while the views live (:mod:`.mapped`).

    Example:
        >>> graph = read_model("classifier.keras")  # doctest: +SKIP
        >>> [record.class_name for record in graph.layers]  # doctest: +SKIP
        ['InputLayer', 'Embedding', 'Bidirectional', 'Dense']
    """
    with _reading(path):
        if file_format(path) == "keras":
            from .archive import read_archive

            return read_archive(path, map_weights=map_weights)
        from .h5 import read_h5

        return read_h5(path, map_weights=map_weights)


__all__ = ["file_format", "is_model_path", "read_model", "read_spec"]
