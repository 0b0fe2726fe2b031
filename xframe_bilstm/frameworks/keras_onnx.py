"""Keras 3's own ONNX export as a framework: the converted layers or the rebuilt model,
exported, on onnxruntime.

The model is built from the run's graph (:func:`keras_model`): a graph that is a recurrent
stack (:func:`~xframe_bilstm.stack_graph.stack_of`) as a functional model of its converted
Keras layers, whose inputs are the run's: ``x``, then every layer's initial states, then
``lengths`` (turned into Keras's mask inside the model); any other graph as
:func:`~xframe_bilstm.adapters.keras.graph_to_keras` rebuilds it, fed one array per model
input. ``model.export(path, format="onnx")`` converts it with tf2onnx on the TensorFlow
backend; where tf2onnx is missing the run fails with the error that names it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..canonical import RecurrentStack, layer_state_names
from ..graph import ModelGraph
from ..reference import Reading
from ..stack_graph import as_graph, stack_of
from .base import Framework, RunSpec
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
    """The float32 Keras model exported for ``graph``, taking the run's inputs: a recurrent
    stack (:func:`~xframe_bilstm.stack_graph.stack_of`) as :func:`functional_model` of its
    converted layers, any other graph as :func:`~xframe_bilstm.adapters.keras.graph_to_keras`
    rebuilds it (which takes the model's inputs only)."""
    stack = stack_of(graph)
    if stack is not None:
        return functional_model(stack, with_states, with_lengths)
    from ..adapters.keras import graph_to_keras

    return graph_to_keras(graph, dtype="float32")


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


def functional_model(stack: RecurrentStack, with_states: bool, with_lengths: bool) -> Any:
    """A float32 Keras functional model computing ``stack``, with the run's inputs.

    Each layer is its own converted Keras layer (what the ``Sequential`` that
    :func:`~xframe_bilstm.adapters.keras.canonical_to_keras` builds holds), so that every
    layer can take its initial states; all take the mask of ``lengths``.
    """
    keras = require("keras")
    from ..adapters.keras import canonical_to_keras
    from ..adapters.onnx import initial_state_input_names

    x = keras.Input((None, stack.input_size), name="x", dtype="float32")
    inputs = [x]
    state_names = initial_state_input_names(stack) if with_states else ()
    units = [layer.units for layer in stack.layers for _ in layer_state_names(layer)]
    states = [keras.Input((u,), name=n, dtype="float32") for n, u in zip(state_names, units)]
    inputs += states
    mask = None
    if with_lengths:
        lengths = keras.Input((), name="lengths", dtype="int32")
        inputs.append(lengths)
        mask = _mask_layer(keras)(x, lengths)
    sequence: Any = x
    last = len(stack.layers) - 1
    for index, layer in enumerate(stack.layers):
        single = RecurrentStack(
            (layer,),
            return_sequences=stack.return_sequences or index < last,
            return_state=stack.return_state and index == last,
        )
        count = len(layer_state_names(layer))
        layer_states, states = states[:count], states[count:]
        keras_layer = canonical_to_keras(single, dtype="float32")
        options: dict[str, Any] = {"mask": mask} if mask is not None else {}
        if layer_states:
            options["initial_state"] = layer_states
        sequence = keras_layer(sequence, **options)
    return keras.Model(inputs if len(inputs) > 1 else x, sequence)


def _mask_layer(keras: Any) -> Any:
    """A layer turning (x, lengths) into Keras's (B, T) mask of right-padded rows."""

    class LengthsMask(keras.layers.Layer):
        def call(self, x: Any, lengths: Any) -> Any:
            steps = keras.ops.arange(keras.ops.shape(x)[1], dtype="int32")
            return keras.ops.less(steps[None, :], keras.ops.expand_dims(lengths, 1))

    return LengthsMask(name="lengths_mask")
