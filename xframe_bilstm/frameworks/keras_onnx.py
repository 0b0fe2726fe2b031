"""Keras 3's own ONNX export as a framework: the converted layers or the rebuilt model,
exported, on onnxruntime.

The model is the one the Keras columns run, in float32 (:func:`keras_model`): a recurrent
stack as a functional model of its converted Keras layers taking the run's inputs, any other
graph as :func:`~xframe_bilstm.adapters.keras.graph_to_keras` rebuilds it.
``model.export(path, format="onnx")`` converts it with tf2onnx on the TensorFlow backend;
where tf2onnx is missing the run fails with the error that names it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..graph import ModelGraph
from ..reference import Reading
from ..stack_graph import as_graph, stack_of
from .base import Framework, RunSpec
from .keras_built import built_model
from .onnx_feeds import graph_lengths, run_inputs
from .onnx_session import (
    export_error,
    installed,
    onnxruntime_devices,
    onnxruntime_versions,
    run_model,
)

_EXPORTER = 'keras Model.export(format="onnx")'


class KerasOnnxFramework(Framework):
    """``model.export(format="onnx")`` of the converted Keras layers or rebuilt Keras model,
    on onnxruntime."""

    name = "keras-onnx"
    module = "keras"

    @classmethod
    def available(cls) -> bool:
        # Keras exports through tf2onnx on the TensorFlow backend, the one run_keras uses.
        return installed("keras", "tensorflow", "tf2onnx", "onnx", "onnxruntime")

    def devices(self) -> list[str]:
        return onnxruntime_devices()

    def dtypes(self, device: str) -> list[str]:
        # Keras documents that the dtype policy must be float32 for ONNX export.
        return ["float32"]

    def versions(self) -> dict[str, str]:
        keras = require("keras")
        return {"keras": keras.__version__, **onnxruntime_versions()}

    def supports(self, reading: Reading) -> str | None:
        return rebuild_refusal(as_graph(reading))

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
        keras = require("keras")
        graph = as_graph(stack)
        lengths = graph_lengths(graph, lengths)  # a whole model's masks come from its inputs
        model = keras_model(graph, initial_states is not None, lengths is not None)
        feeds = run_inputs(graph, x, initial_states, lengths)
        # Keras exports only models that have been called, with inputs of their own dtypes.
        arrays = [np.asarray(a, i.dtype) for a, i in zip(feeds, model.inputs)]
        model(arrays if len(arrays) > 1 else arrays[0], training=False)
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "model.onnx")
            try:
                model.export(path, format="onnx", verbose=False)
            except Exception as error:  # the exporter under test failed (or tf2onnx is missing)
                raise export_error(_EXPORTER, error) from error
            exported = onnx.load(path)
        onnx.checker.check_model(exported)
        outputs, settings = run_model(exported, feeds, spec, initial_states=None, lengths=None)
        return outputs, {
            "exporter": _EXPORTER,
            "keras": keras.__version__,
            "keras_backend": keras.backend.backend(),
            **settings,
        }


def keras_model(graph: ModelGraph, with_states: bool, with_lengths: bool) -> Any:
    """The float32 Keras model exported for ``graph``, taking the run's inputs: the model
    the Keras columns run (:func:`~xframe_bilstm.frameworks.keras_built.built_model`)."""
    return built_model(graph, "float32", with_states=with_states, with_lengths=with_lengths)


def rebuild_refusal(graph: ModelGraph) -> str | None:
    """Why :func:`keras_model` cannot export ``graph`` so it computes it, or None: a stack's
    converted layers always can; another graph's rebuild and its export may not."""
    if stack_of(graph) is not None:
        return None
    from ..adapters.keras import graph_refusal

    rebuilt, exported = graph_refusal(graph), _export_refusal(graph)
    if exported is None:
        return rebuilt
    return f"{rebuilt}; {exported}" if rebuilt else f"{graph.source}: {exported}"


def _export_refusal(graph: ModelGraph) -> str | None:
    """Why Keras's ONNX export of the rebuilt ``graph`` would not compute it, or None."""
    # Seen with Keras 3.15, TensorFlow 2.21 and tf2onnx 1.17: the exported TimeDistributed
    # returns (B, B, F), the batch size where the time axis belongs.
    refusals = [
        f"layer {record.name!r} ({record.class_name}): Keras's ONNX export (tf2onnx) gives "
        "TimeDistributed's output the batch size as its time axis; a Dense on the sequence "
        "computes the same per step and exports"
        for record in graph.layers
        if record.kind == "dense" and record.options["time_distributed"]
    ]
    return "; ".join(refusals) or None
