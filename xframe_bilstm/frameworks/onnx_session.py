"""Running an ONNX model in onnxruntime, as every ONNX column does (``onnxruntime``,
``torch-onnx``, ``keras-onnx``, which differ only in who writes the graph): its devices, a
session with the run's provider and what ran, and the errors of an exporter under test.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._imports import require
from .base import RunSpec

_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


class ExportError(RuntimeError):
    """An exporter under test raised: its run fails with this, naming the exporter."""


def export_error(exporter: str, error: BaseException) -> ExportError:
    """An :class:`ExportError` whose first line says what went wrong.

    Exporters wrap the real cause (torch.export's ``TorchExportError`` starts with "Failed to
    export the model ... Next steps:"), and reports show first lines only, so the message
    names the exception raised and the innermost cause with its first line.
    """
    cause = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    message = f"{exporter} raised {type(error).__name__}"
    if cause is not error:
        message += f", caused by {type(cause).__name__}"
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(cause))  # colour codes some exporters print
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return ExportError(f"{message}: {first}" if first else message)


def installed(*modules: str) -> bool:
    """Whether every module can be imported, without importing any of them."""
    return all(importlib.util.find_spec(module) is not None for module in modules)


def onnxruntime_devices() -> list[str]:
    """``cpu``, and ``gpu:N`` when the installed onnxruntime runs models on CUDA."""
    ort = require("onnxruntime")
    if _CUDA not in ort.get_available_providers() or not _cuda_runs(ort):
        return ["cpu"]
    # onnxruntime has no device count of its own; newer versions list the devices of each
    # execution provider, older ones do not, and then the first GPU is the one we know of.
    listed = [d for d in getattr(ort, "get_ep_devices", list)() if d.ep_name == _CUDA]
    return ["cpu"] + [f"gpu:{index}" for index in range(max(1, len(listed)))]


def onnxruntime_versions() -> dict[str, str]:
    ort = require("onnxruntime")
    onnx = require("onnx")
    return {"onnxruntime": ort.__version__, "onnx": onnx.__version__}


def run_model(
    model: Any,
    x: np.ndarray | tuple[np.ndarray, ...],
    spec: RunSpec,
    *,
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
    intra_op_threads: int = 0,
) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
    """Run an ONNX model on onnxruntime on ``spec.device``; float64 outputs and settings.
    ``intra_op_threads``: the session's intra-op thread count (0: onnxruntime's default).

    Raises:
        RuntimeError: a GPU run whose session did not get the CUDA execution provider
            (onnxruntime then runs on CPU without saying so).
    """
    ort = require("onnxruntime")
    from ..adapters.onnx import graph_feeds

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: warnings about unused initializers are noise
    options.intra_op_num_threads = intra_op_threads
    providers = _providers(spec)
    feeds = graph_feeds(model, x, initial_states=initial_states, lengths=lengths)
    session = ort.InferenceSession(
        model.SerializeToString(), sess_options=options, providers=providers
    )
    used = session.get_providers()
    if spec.device != "cpu" and _CUDA not in used:
        raise RuntimeError(f"{_CUDA} did not load for {spec.device}; onnxruntime used {used}")
    outputs = tuple(np.asarray(value, dtype=np.float64) for value in session.run(None, feeds))
    settings: dict[str, object] = {
        "providers": ", ".join(used),
        "opset": model_opset(model),
        "onnxruntime": ort.__version__,
        "graph_optimization_level": str(options.graph_optimization_level).split(".")[-1],
        "intra_op_num_threads": options.intra_op_num_threads or "default",
    }
    if spec.device != "cpu":
        settings["use_tf32"] = spec.tf32
    return outputs, settings


def model_opset(model: Any) -> int:
    """The default-domain opset a model imports."""
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _providers(spec: RunSpec) -> list[Any]:
    if spec.device == "cpu":
        return [_CPU]
    index = int(spec.device.split(":")[1])
    # onnxruntime's CUDA provider computes in TF32 unless told not to (use_tf32 defaults to
    # on); the run's own setting decides, as for the other frameworks.
    options = {"device_id": str(index), "use_tf32": "1" if spec.tf32 else "0"}
    return [(_CUDA, options), _CPU]


_CUDA_RUNS: list[bool] = []


def _cuda_runs(ort: Any) -> bool:
    """Whether a session gets the CUDA provider here (an onnxruntime GPU build on a machine
    without a usable GPU lists the provider but falls back to CPU). Cached."""
    if not _CUDA_RUNS:
        from ..adapters.onnx.runtime import probe_model

        options = ort.SessionOptions()
        options.log_severity_level = 4  # the probe's failure is the answer, not an error
        try:
            session = ort.InferenceSession(
                probe_model().SerializeToString(), sess_options=options, providers=[_CUDA, _CPU]
            )
            _CUDA_RUNS.append(_CUDA in session.get_providers())
        except Exception:  # onnxruntime raises its own exception types; any means "no"
            _CUDA_RUNS.append(False)
    return _CUDA_RUNS[0]
