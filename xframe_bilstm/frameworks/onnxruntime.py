"""onnxruntime as a framework: our own ONNX export of the stack or whole model, run on CPU
or CUDA (in a session as every ONNX column runs one: :mod:`~xframe_bilstm.frameworks.onnx_session`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..canonical import RecurrentStack
from ..graph import ModelGraph
from ..inputs import as_list
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
    """Our exporters (:func:`~xframe_bilstm.adapters.onnx.canonical_to_onnx`, and
    :func:`~xframe_bilstm.adapters.onnx.graph_to_onnx` for whole models) on onnxruntime."""

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

    def supports(self, reading: Reading) -> str | None:
        if isinstance(reading, RecurrentStack):
            return None
        from ..adapters.onnx.graph_export import GRAPH_OPSET, graph_export_refusal

        return graph_export_refusal(reading, GRAPH_OPSET)

    def run(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
        onnx = require("onnx")
        from ..adapters.onnx import canonical_to_onnx, graph_to_onnx, newest_runtime_opset

        opset = newest_runtime_opset()
        if isinstance(stack, ModelGraph):  # feeds: one array per model input
            model = graph_to_onnx(stack, opset=opset, dtype=spec.dtype)
            x, exporter = tuple(as_list(x)), "graph_to_onnx"
        else:
            model = canonical_to_onnx(
                stateless(stack),
                opset=opset,
                with_initial_states=initial_states is not None,
                with_lengths=lengths is not None,
                dtype=spec.dtype,
            )
            exporter = "canonical_to_onnx"
        onnx.checker.check_model(model, full_check=True)
        outputs, settings = run_model(
            model, x, spec, initial_states=initial_states, lengths=lengths
        )
        return outputs, {"exporter": f"xframe_bilstm {exporter}", **settings}
