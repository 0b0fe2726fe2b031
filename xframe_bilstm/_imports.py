"""Import frameworks on first use, with an error that names the pip extra to install.

Importing ``xframe_bilstm`` itself imports numpy only. The adapters call
:func:`require` inside their functions; torch is imported before Keras/TensorFlow
whenever both are needed, since the reverse order can crash some builds.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from types import ModuleType

from .errors import FrameworkUnavailableError

_EXTRAS = {
    "torch": "torch",
    "keras": "tf",
    "tensorflow": "tf",
    "onnx": "onnx",
    "onnxruntime": "onnx",
}


def require(name: str) -> ModuleType:
    """Import and return framework ``name``, or raise FrameworkUnavailableError.

    Example:
        >>> require("numpy").__name__
        'numpy'
    """
    if name in ("keras", "tensorflow") and "torch" not in sys.modules:
        # torch first: importing it after TensorFlow can segfault.
        with contextlib.suppress(ImportError):
            importlib.import_module("torch")
    try:
        return importlib.import_module(name)
    except ImportError as error:
        extra = _EXTRAS.get(name, "all")
        raise FrameworkUnavailableError(
            f"{name} is needed for this call but is not installed ({error}); "
            f"install it with: pip install 'xframe_bilstm[{extra}]'"
        ) from error
