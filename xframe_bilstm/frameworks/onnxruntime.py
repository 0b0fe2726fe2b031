"""onnxruntime as a framework: our own ONNX export of the stack or whole model, and an ONNX
source's graph as given, run on CPU or CUDA (in a session as every ONNX column runs one:
:mod:`~xframe_bilstm.frameworks.onnx_session`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..canonical import RecurrentStack
from ..correspondence import Source, graph_source, onnx_source
from ..errors import UnsupportedFeatureError, WeightShapeError
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
            from ..adapters.onnx import activation_refusal

            reasons = (activation_refusal(layer) for layer in reading.layers)
            return next((reason for reason in reasons if reason), None)
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


class OnnxGraphFramework(OnnxruntimeFramework):
    """An ONNX graph as given, run on onnxruntime: the ``@original`` of an ONNX source, or an
    ONNX ``against`` of a whole model.

    A graph of recurrent nodes has its inputs fed by what they mean, as
    :func:`~xframe_bilstm.adapters.onnx.example_inputs.seeded_graph_inputs` tells them apart:
    the run's sequence in the layout the graph declares (time-major or batch-major), its
    initial states (zeros when none are given) and its lengths (full rows when none are
    given). A graph standing for a whole model takes the model's inputs and returns its
    outputs, both in order. It returns the graph's outputs as the graph gives them, in the
    graph's own dtype (:meth:`returns` says what they mean). The reading a run is given is
    ignored: only the graph's own computation is compared.
    """

    def __init__(self, model: Any, reading: Reading) -> None:
        self.model = model
        self.reading = reading  # what the graph stands for, which tells what its outputs mean
        if isinstance(reading, ModelGraph):
            self.dtype = _model_graph_dtype(model, reading)
            return
        from ..adapters.onnx.example_inputs import seeded_graph_inputs

        inputs = seeded_graph_inputs(model, seed=0, batch=1, steps=1)
        self.time_major = inputs.time_major
        self.dtype = inputs.value(inputs.x_name).dtype.name

    def returns(self, batch: int, steps: int, description: str) -> Source:
        """What its runs return, by meaning
        (:func:`~xframe_bilstm.correspondence.onnx_source`)."""
        if isinstance(self.reading, ModelGraph):
            return graph_source(self.reading, description)
        names = [output.name for output in self.model.graph.output]
        return onnx_source(self.reading, names, self.time_major, batch, steps, description)

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
        if isinstance(self.reading, ModelGraph):  # the model's inputs, in order
            feeds: tuple[np.ndarray, ...] = tuple(as_list(x))
        else:
            feeds = self._feeds(np.asarray(x), initial_states, lengths)
        outputs, settings = run_model(self.model, feeds, spec, initial_states=None, lengths=None)
        return outputs, {"graph": "as given", **settings}

    def _feeds(
        self, x: np.ndarray, states: Sequence[np.ndarray] | None, lengths: np.ndarray | None
    ) -> tuple[np.ndarray, ...]:
        """Every input of the graph, in graph order, given by what it means."""
        from ..adapters.onnx.example_inputs import seeded_graph_inputs

        batch, steps = x.shape[:2]
        inputs = seeded_graph_inputs(self.model, seed=0, batch=batch, steps=steps, zero_states=True)
        feeds = inputs.feeds()
        feeds[inputs.x_name] = np.swapaxes(x, 0, 1) if inputs.time_major else x
        if states is not None:
            if len(states) != len(inputs.state_names):
                takes = ", ".join(inputs.state_names) or "no state inputs"
                raise WeightShapeError(
                    f"initial_states: {len(states)} arrays, where the graph takes "
                    f"{len(inputs.state_names)} ({takes}); compare it with one per state input"
                )
            feeds.update(zip(inputs.state_names, states))
        if inputs.lengths_name is not None:
            feeds[inputs.lengths_name] = np.full(batch, steps) if lengths is None else lengths
        elif lengths is not None:
            raise UnsupportedFeatureError(
                "lengths: the graph has no lengths input and runs every row in full; "
                "compare it without lengths"
            )
        return tuple(feeds[name] for name in inputs.names)


def _model_graph_dtype(model: Any, graph: ModelGraph) -> str:
    """The dtype an ONNX graph standing for ``graph`` computes in: its first output's.

    Raises:
        UnsupportedFeatureError: the graph's inputs or outputs do not match the model's in
            number, so it cannot be fed the model's inputs or paired with its outputs.
    """
    onnx = require("onnx")
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    outputs = [o.name for o in model.graph.output]
    if len(inputs) != len(graph.inputs) or len(outputs) != len(graph.outputs):
        raise UnsupportedFeatureError(
            f"the ONNX graph takes {len(inputs)} input(s) {inputs} and returns "
            f"{len(outputs)} output(s) {outputs}, where {graph.source} takes "
            f"{len(graph.inputs)} {list(graph.inputs)} and returns {len(graph.outputs)} "
            f"{list(graph.outputs)}; compare an export of the same model"
        )
    elem_type = model.graph.output[0].type.tensor_type.elem_type
    return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
