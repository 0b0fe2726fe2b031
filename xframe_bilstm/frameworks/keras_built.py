"""The Keras model that the Keras-based columns run: rebuilt from the reading, with the run's
inputs as model inputs, on whatever backend this process's Keras has.

A whole model is the functional model
:func:`~xframe_bilstm.adapters.keras.graph_to_keras` rebuilds (what the ``keras`` column
runs), fed one array per model input. A stack becomes a functional model whose inputs are
the run's: ``x``, then every layer's initial states, then ``lengths`` (turned into Keras's
mask inside the model), so that a converter or another backend sees one model of fixed
inputs. No framework is imported at module level.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..canonical import RecurrentStack, layer_state_names
from ..inputs import as_list
from ..reference import Reading
from ..stack_graph import as_graph, stack_of, takes_lengths


def built_model(
    reading: Reading, dtype: str, *, with_states: bool = False, with_lengths: bool = False
) -> Any:
    """The Keras model computing ``reading`` in ``dtype`` (float inputs in ``dtype`` too):
    a stack's graph as :func:`stack_model` of the stack it is, any other graph as
    :func:`~xframe_bilstm.adapters.keras.graph_to_keras` rebuilds it."""
    graph = as_graph(reading)
    stack = stack_of(graph)
    if stack is not None:
        return stack_model(stack, dtype, with_states, with_lengths)
    from ..adapters.keras import graph_to_keras

    return graph_to_keras(graph, dtype=dtype)


def model_inputs(
    reading: Reading,
    x: Any,
    dtype: str,
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
) -> list[np.ndarray]:
    """The arrays a :func:`built_model` takes, in its input order: floats in ``dtype``,
    token ids and lengths as int32. The initial states and lengths given follow the inputs
    where the graph takes them (a stack's)."""
    inputs = [_cast(a, dtype) for a in as_list(x)]
    if takes_lengths(as_graph(reading)):
        inputs += [np.asarray(s, dtype) for s in initial_states or ()]
        inputs += [] if lengths is None else [np.asarray(lengths, np.int32)]
    return inputs


def stack_model(stack: RecurrentStack, dtype: str, with_states: bool, with_lengths: bool) -> Any:
    """A Keras functional model computing ``stack`` (stateful or not: one run from the given
    or zero states computes what a stateful layer's first call does), one converted layer
    per recurrent layer so that each can take its initial states; all take the mask."""
    keras = require("keras")
    from ..adapters.keras import canonical_to_keras

    stack = dataclasses.replace(stack, stateful=False) if stack.stateful else stack
    x = keras.Input((None, stack.input_size), name="x", dtype=dtype)
    inputs = [x]
    states = [
        keras.Input((layer.units,), name=f"state_{index}_{name}", dtype=dtype)
        for index, layer in enumerate(stack.layers)
        for name in (layer_state_names(layer) if with_states else ())
    ]
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
        count = len(layer_state_names(layer)) if with_states else 0
        layer_states, states = states[:count], states[count:]
        options: dict[str, Any] = {"mask": mask} if mask is not None else {}
        if layer_states:
            options["initial_state"] = layer_states
        sequence = canonical_to_keras(single, dtype=dtype)(sequence, **options)
    return keras.Model(inputs if len(inputs) > 1 else x, sequence)


def as_outputs(result: Any) -> tuple[np.ndarray, ...]:
    """A model's result (one array or a list) as float64 numpy arrays."""
    keras = require("keras")
    results = result if isinstance(result, (list, tuple)) else [result]
    return tuple(np.asarray(keras.ops.convert_to_numpy(r), np.float64) for r in results)


def _cast(array: np.ndarray, dtype: str) -> np.ndarray:
    array = np.asarray(array)
    return array.astype(dtype) if array.dtype.kind == "f" else array


def _mask_layer(keras: Any) -> Any:
    """A layer turning (x, lengths) into Keras's (B, T) mask of right-padded rows."""

    class LengthsMask(keras.layers.Layer):
        def call(self, x: Any, lengths: Any) -> Any:
            steps = keras.ops.arange(keras.ops.shape(x)[1], dtype="int32")
            return keras.ops.less(steps[None, :], keras.ops.expand_dims(lengths, 1))

    return LengthsMask(name="lengths_mask")


__all__ = ["as_outputs", "built_model", "model_inputs", "stack_model"]
