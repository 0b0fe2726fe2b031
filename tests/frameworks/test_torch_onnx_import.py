"""``import_exporter_early``: torch's ONNX exporter imported before TensorFlow, when needed.

Each case runs in a fresh interpreter, since what it checks is which modules a process has
loaded and in which order.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SCRIPT = """
import json, sys
{before}
from xframe_bilstm.frameworks import auto_frameworks
from xframe_bilstm.frameworks.torch_onnx import import_exporter_early
done = import_exporter_early({frameworks})
print(json.dumps({{"done": done, "exporter": "torch.onnx" in sys.modules}}))
"""


def _fresh(frameworks: str, before: str = "") -> dict[str, bool]:
    code = SCRIPT.format(before=before, frameworks=frameworks)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_installed_frameworks_import_the_exporter_before_tensorflow() -> None:
    assert _fresh("auto_frameworks()") == {"done": True, "exporter": True}


def test_named_torch_onnx_imports_the_exporter() -> None:
    assert _fresh("['keras', 'torch-onnx']") == {"done": True, "exporter": True}


def test_frameworks_without_the_exporter_leave_it_unimported() -> None:
    assert _fresh("['torch', 'keras']") == {"done": False, "exporter": False}


def test_nothing_is_done_once_tensorflow_is_imported() -> None:
    pytest.importorskip("tensorflow")
    found = _fresh("auto_frameworks()", before="import torch, tensorflow")
    assert found == {"done": False, "exporter": False}
