"""Importing the package must not import any framework (they are slow and optional)."""

from __future__ import annotations

import subprocess
import sys

FRAMEWORKS = ("torch", "tensorflow", "keras", "onnx", "onnxruntime", "h5py", "jax")


def test_import_leaves_every_framework_unimported() -> None:
    code = (
        "import sys, xframe_bilstm, xframe_bilstm.cli, xframe_bilstm.runner, "
        "xframe_bilstm.onnx_converters, xframe_bilstm.adapters.onnx, xframe_bilstm.frameworks, "
        "xframe_bilstm.lint, xframe_bilstm.keras_files, xframe_bilstm.keras_files.config, "
        "xframe_bilstm.keras_files.h5, xframe_bilstm.keras_files.archive, "
        "xframe_bilstm.models, xframe_bilstm.models.live, xframe_bilstm.reference, "
        "xframe_bilstm.planning, xframe_bilstm.pairing, xframe_bilstm.inputs, "
        "xframe_bilstm.models.port; "
        f"print(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "", f"imported at package import: {result.stdout.strip()}"


def test_missing_framework_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from xframe_bilstm._imports import require\n"
        "from xframe_bilstm import FrameworkUnavailableError\n"
        "try:\n    require('torch')\n"
        "except FrameworkUnavailableError as error:\n"
        "    assert isinstance(error, ImportError); print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert "pip install 'xframe_bilstm[torch]'" in result.stdout
