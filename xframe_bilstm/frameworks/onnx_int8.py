"""An int8 ONNX graph as given, on onnxruntime's int8 kernels: the ``@original`` of an int8
source, whose pairs are judged against a quantization budget
(:mod:`~xframe_bilstm.quantization`), not the float32 tolerance.

Its inputs mean what the dequantized float graph's inputs mean (the same names, the
recurrent nodes ``LSTM`` there), so they are fed as
:class:`~xframe_bilstm.frameworks.onnxruntime.OnnxGraphFramework` feeds that graph.
``DynamicQuantizeLSTM``'s result depends on onnxruntime's intra-op threads: it runs with
:data:`INT8_THREADS`, as :func:`~xframe_bilstm.quantization.quantization_error` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..reference import Reading
from .base import RunSpec
from .onnx_session import run_model
from .onnxruntime import OnnxGraphFramework

# onnxruntime's intra-op threads for the int8 graph (its result depends on them).
INT8_THREADS = 1
# The dtype an int8 run is labelled with, e.g. ``onnxruntime[cpu,int8]@original``.
INT8 = "int8"


class OnnxInt8Framework(OnnxGraphFramework):
    """``int8`` run on onnxruntime's CPU int8 kernels; ``floats`` is its dequantized
    float graph, which says what its inputs and outputs mean."""

    def __init__(self, int8: Any, floats: Any, reading: Reading) -> None:
        super().__init__(floats, reading)
        self.int8 = int8
        self.dtype = INT8

    def devices(self) -> list[str]:
        return ["cpu"]  # DynamicQuantizeLSTM has CPU kernels only

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
        outputs, settings = run_model(
            self.int8, feeds, spec, initial_states=None, lengths=None, intra_op_threads=INT8_THREADS
        )
        return outputs, {"graph": "int8, as given", **settings}

    def quantization_budget(
        self,
        x: Any,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> float:
        """The default budget of this input: the largest step budget
        :func:`~xframe_bilstm.quantization.quantization_steps` gives any recurrent node
        and direction (the later nodes' include what the earlier ones carry)."""
        from ..adapters.onnx import graph_feeds
        from ..quantization import quantization_steps

        # Cast to the dtypes the graph declares, as every run's feeds are.
        feeds = graph_feeds(self.int8, self.feeder.feeds(x, initial_states, lengths))
        steps = quantization_steps(self.int8, feeds, threads=INT8_THREADS)
        return max(step.budget for step in steps)


__all__ = ["INT8", "INT8_THREADS", "OnnxInt8Framework"]
