"""onnxruntime as a framework: our own ONNX export of the stack or whole model, and an ONNX
source's graph as given, run on CPU or CUDA (in a session as every ONNX column runs one:
:mod:`~xframe_bilstm.frameworks.onnx_session`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..correspondence import Source
from ..reference import Reading
from ..stack_graph import as_graph
from .base import Framework, RunSpec
from .onnx_feeds import graph_feeder, graph_lengths, run_inputs
from .onnx_session import installed, onnxruntime_devices, onnxruntime_versions, run_model


class OnnxruntimeFramework(Framework):
    """Our exporter (:func:`~xframe_bilstm.adapters.onnx.export_graph`: a stack as
    :func:`~xframe_bilstm.adapters.onnx.canonical_to_onnx` exports it, a whole model as
    :func:`~xframe_bilstm.adapters.onnx.graph_to_onnx` does) on onnxruntime."""

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
        from ..adapters.onnx import export_refusal

        return export_refusal(as_graph(reading))

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
        from ..adapters.onnx import export_graph, newest_runtime_opset

        graph = as_graph(stack)
        lengths = graph_lengths(graph, lengths)  # a whole model's masks come from its inputs
        export = export_graph(
            graph,
            opset=newest_runtime_opset(),
            dtype=spec.dtype,
            with_initial_states=initial_states is not None,
            with_lengths=lengths is not None,
        )
        onnx.checker.check_model(export.model, full_check=True)
        feeds = run_inputs(graph, x, initial_states, lengths)
        outputs, settings = run_model(export.model, feeds, spec, initial_states=None, lengths=None)
        return outputs, {"exporter": f"xframe_bilstm {export.exporter}", **settings}


class OnnxGraphFramework(OnnxruntimeFramework):
    """An ONNX graph as given, run on onnxruntime: the ``@original`` of an ONNX source, or an
    ONNX ``against`` of a whole model.

    It is fed and read as :func:`~xframe_bilstm.frameworks.onnx_feeds.graph_feeder` says
    from the graph of the reading it stands for: a recurrent stack's inputs by what they
    mean, a whole model's in order. It returns the graph's outputs as the graph gives them,
    in the graph's own dtype (:meth:`returns` says what they mean). The reading a run is
    given is ignored: only the graph's own computation is compared.
    """

    def __init__(self, model: Any, reading: Reading) -> None:
        self.model = model
        self.reading = reading  # what the graph stands for, which tells what its outputs mean
        self.feeder = graph_feeder(model, as_graph(reading))
        self.dtype = self.feeder.dtype

    def returns(self, batch: int, steps: int, description: str) -> Source:
        """What its runs return, by meaning
        (:mod:`~xframe_bilstm.correspondence.outputs`)."""
        return self.feeder.returns(batch, steps, description)

    def dtypes(self, device: str) -> list[str]:
        return [self.dtype]

    def supports(self, reading: Reading) -> str | None:
        return None  # it runs itself, whatever the library read it as

    def run(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
        feeds = self.feeder.feeds(x, initial_states, lengths)
        outputs, settings = run_model(self.model, feeds, spec, initial_states=None, lengths=None)
        return outputs, {"graph": "as given", **settings}
