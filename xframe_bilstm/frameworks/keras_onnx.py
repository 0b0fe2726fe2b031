"""Keras 3's own ONNX export as a framework: the converted layers or the rebuilt model,
exported, on onnxruntime.

For a stack, the converted Keras layers are wrapped in a functional model whose inputs are
the run's: ``x``, then every layer's initial states, then ``lengths`` (turned into Keras's
mask inside the model). A whole model is the one
:func:`~xframe_bilstm.adapters.keras.graph_to_keras` rebuilds, fed one array per model
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
from ..inputs import as_list
from ..reference import Reading
from .base import Framework, RunSpec
from .onnx_session import (
    export_error,
    installed,
    onnxruntime_devices,
    onnxruntime_versions,
    run_model,
    stateless,
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
        if isinstance(reading, RecurrentStack):
            return None
        from ..adapters.keras import graph_refusal

        rebuilt, exported = graph_refusal(reading), _export_refusal(reading)
        if exported is None:
            return rebuilt
        return f"{rebuilt}; {exported}" if rebuilt else f"{reading.source}: {exported}"

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
        if isinstance(stack, ModelGraph):  # feeds: one array per model input
            from ..adapters.keras import graph_to_keras

            x = tuple(as_list(x))
            model = graph_to_keras(stack, dtype="float32")
            arrays = [np.asarray(a, np.float32) if a.dtype.kind == "f" else a for a in x]
            model(arrays if len(arrays) > 1 else arrays[0], training=False)  # export needs a call
        else:
            model = functional_model(
                stateless(stack), initial_states is not None, lengths is not None
            )
            _call_once(model, x, initial_states, lengths)
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "model.onnx")
            try:
                model.export(path, format="onnx", verbose=False)
            except Exception as error:  # the exporter under test failed (or tf2onnx is missing)
                raise export_error(_EXPORTER, error) from error
            exported = onnx.load(path)
        onnx.checker.check_model(exported)
        outputs, settings = run_model(
            exported, x, spec, initial_states=initial_states, lengths=lengths
        )
        return outputs, {
            "exporter": _EXPORTER,
            "keras": keras.__version__,
            "keras_backend": keras.backend.backend(),
            **settings,
        }


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
    return keras.Model(inputs, sequence)


def _mask_layer(keras: Any) -> Any:
    """A layer turning (x, lengths) into Keras's (B, T) mask of right-padded rows."""

    class LengthsMask(keras.layers.Layer):
        def call(self, x: Any, lengths: Any) -> Any:
            steps = keras.ops.arange(keras.ops.shape(x)[1], dtype="int32")
            return keras.ops.less(steps[None, :], keras.ops.expand_dims(lengths, 1))

    return LengthsMask(name="lengths_mask")


def _call_once(
    model: Any,
    x: np.ndarray,
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
) -> None:
    """Keras exports only models that have been called (with inputs as the model's list)."""
    inputs = [np.asarray(x, np.float32)]
    inputs += [np.asarray(s, np.float32) for s in initial_states or ()]
    if lengths is not None:
        inputs.append(np.asarray(lengths, np.int32))
    model(inputs, training=False)
