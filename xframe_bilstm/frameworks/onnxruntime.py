"""onnxruntime as a framework: our own ONNX export of the stack, run on CPU or CUDA
(in a session as every ONNX column runs one: :mod:`~xframe_bilstm.frameworks.onnx_session`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..canonical import RecurrentStack
from ..reference import Reading
from .base import Framework, RunSpec
from .onnx_session import (
    installed,
    onnxruntime_devices,
    onnxruntime_versions,
    run_model,
    stateless,
)


class OnnxruntimeFramework(Framework):
    """Our exporter (:func:`~xframe_bilstm.adapters.onnx.canonical_to_onnx`) on onnxruntime."""

    name = "onnxruntime"
    module = "onnxruntime"

    @classmethod
    def available(cls) -> bool:
        return installed("onnx", "onnxruntime")

    def devices(self) -> list[str]:
        return onnxruntime_devices()

    def dtypes(self, device: str) -> list[str]:
        # onnxruntime has no float64 LSTM/GRU/RNN kernels on CPU ("does not support double
        # yet"); float16 graphs run (on CPU through casts onnxruntime inserts itself).
        return ["float32", "float16"]

    def versions(self) -> dict[str, str]:
        return onnxruntime_versions()

    def run(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
        assert isinstance(stack, RecurrentStack)  # supports() refuses graphs
        onnx = require("onnx")
        from ..adapters.onnx import canonical_to_onnx, newest_runtime_opset

        model = canonical_to_onnx(
            stateless(stack),
            opset=newest_runtime_opset(),
            with_initial_states=initial_states is not None,
            with_lengths=lengths is not None,
            dtype=spec.dtype,
        )
        onnx.checker.check_model(model, full_check=True)
        outputs, settings = run_model(
            model, x, spec, initial_states=initial_states, lengths=lengths
        )
        return outputs, {"exporter": "xframe_bilstm canonical_to_onnx", **settings}
