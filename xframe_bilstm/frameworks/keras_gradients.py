"""Gradients of a Keras run by ``tf.GradientTape``, read back by meaning into canonical names.

The layer that runs (the one rebuilt from the reading, or the user's own) runs compiled, as
its forward runs, under a tape; the gradients of its trainable variables are read back the
way its weights are (:func:`~xframe_bilstm.adapters.keras.keras_to_canonical`, with each
variable holding its gradient for the moment of the reading; its values are put back
afterwards), and each variable's path is the native name beside. That naming,
:func:`named_gradients`, is shared with the Keras columns on the JAX and PyTorch backends
(:mod:`~xframe_bilstm.frameworks.keras_backend_gradients`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import UnsupportedFeatureError
from ..gradient_arrays import (
    GradientArrays,
    gradient_arrays,
    input_label,
    native_names,
    weight_arrays,
)
from ..masks import mask_from_lengths


def keras_gradients(
    tf: Any,
    keras: Any,
    layer: Any,
    x: np.ndarray,
    cotangents: Sequence[np.ndarray],
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
) -> GradientArrays:
    """Differentiate ``Σ cotangent ⊙ output`` of ``layer`` run compiled on ``x``."""
    from ..adapters.keras.run import _compiled, _compute_dtype

    if initial_states is not None and isinstance(layer, keras.Sequential):
        raise UnsupportedFeatureError(
            "initial_states: a Keras Sequential takes no initial_state, so its state "
            "gradients cannot be taken; compare the layers one at a time"
        )
    dtype = _compute_dtype(layer, keras)
    inputs = tf.constant(np.asarray(x, dtype=dtype))
    states = None
    if initial_states is not None:
        states = [tf.constant(np.asarray(s, dtype=dtype)) for s in initial_states]
    mask = None if lengths is None else tf.constant(mask_from_lengths(lengths, *x.shape[:2]))
    variables = list(layer.trainable_variables)
    with tf.GradientTape() as tape:
        tape.watch([inputs, *(states or [])])
        outputs = keras.tree.flatten(_compiled(layer)(inputs, states, mask))
    if len(outputs) != len(cotangents):
        raise ValueError(
            f"the layer returned {len(outputs)} arrays where {len(cotangents)} were expected"
        )
    weights = [tf.constant(np.asarray(c), dtype=o.dtype) for c, o in zip(cotangents, outputs)]
    grads = tape.gradient(
        outputs,
        [inputs, *(states or []), *variables],
        output_gradients=weights,
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    count = 1 + len(states or [])
    return named_gradients(
        keras,
        layer,
        variables,
        grads[0].numpy(),
        [g.numpy() for g in grads[1:count]] if states is not None else None,
        [g.numpy() for g in grads[count:]],
    )


def named_gradients(
    keras: Any,
    layer: Any,
    variables: Sequence[Any],
    inputs: np.ndarray,
    states: Sequence[np.ndarray] | None,
    weights: Sequence[np.ndarray],
) -> GradientArrays:
    """The gradients of a Keras ``layer`` by canonical name, whatever backend took them.

    ``weights`` holds the gradient of each of ``variables`` (the layer's trainable
    variables, in that order); they are read back by meaning as the layer's weights are,
    and each variable's path is the native name beside.
    """
    named, native = _by_meaning(keras, layer, list(variables), weights)
    return gradient_arrays(
        np.asarray(inputs, np.float64),
        None if states is None else [np.asarray(s, np.float64) for s in states],
        named,
        native,
    )


def _by_meaning(
    keras: Any, layer: Any, variables: list[Any], weights: Sequence[np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, ...]]]:
    """A recurrent layer's weight gradients by canonical name, and each one's native
    name(s): read back as its weights are read, the variables holding markers for the
    names."""
    read = _read_with(keras, layer, variables, [np.asarray(w) for w in weights])
    numbered = [np.full(tuple(v.shape), i + 1.0) for i, v in enumerate(variables)]
    markers = _read_with(keras, layer, variables, numbered)
    paths = [getattr(v, "path", v.name) for v in variables]
    return weight_arrays(read), native_names(markers, paths, "keras")


def _read_with(keras: Any, layer: Any, variables: list[Any], values: list[np.ndarray]) -> Any:
    """The canonical stack of ``layer`` read while its variables hold ``values``."""
    from ..adapters.keras import keras_to_canonical

    saved = [np.array(keras.ops.convert_to_numpy(v)) for v in variables]
    try:
        for variable, value in zip(variables, values):
            variable.assign(np.asarray(value, dtype=variable.dtype))
        return keras_to_canonical(layer)
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)


def keras_model_gradients(
    tf: Any, keras: Any, model: Any, x: Any, cotangents: Sequence[np.ndarray]
) -> GradientArrays:
    """Differentiate ``Σ cotangent ⊙ output`` of a whole Keras model on its inputs.

    The model runs eagerly as its own ``call`` computes it (masks from ``mask_zero`` and
    ``Masking`` included). Float inputs get a gradient (``inputs``, ``inputs[i]`` among
    several), token ids none. A recurrent layer's variables are read back by meaning into
    canonical names (``<layer>/forward.kernel``...); every other layer's are named
    ``<layer>/<variable>`` (``dense/kernel``, ``embedding/embeddings``), its path beside.
    """
    from ..inputs import as_list

    arrays = as_list(x)
    tensors = [tf.constant(a) for a in arrays]
    floats = [i for i, a in enumerate(arrays) if np.issubdtype(np.asarray(a).dtype, np.floating)]
    dtype = model.compute_dtype if hasattr(model, "compute_dtype") else "float32"
    for index in floats:
        tensors[index] = tf.constant(np.asarray(arrays[index], dtype=dtype))
    variables = list(model.trainable_variables)
    with tf.GradientTape() as tape:
        tape.watch([tensors[i] for i in floats])
        result = model(tensors if len(tensors) > 1 else tensors[0], training=False)
        outputs = keras.tree.flatten(result)
    if len(outputs) != len(cotangents):
        raise ValueError(
            f"the model returned {len(outputs)} arrays where {len(cotangents)} were expected"
        )
    weights = [tf.constant(np.asarray(c), dtype=o.dtype) for c, o in zip(cotangents, outputs)]
    grads = tape.gradient(
        outputs,
        [*(tensors[i] for i in floats), *variables],
        output_gradients=weights,
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    named = {
        input_label(index, len(arrays)): np.asarray(g.numpy(), np.float64)
        for index, g in zip(floats, grads)
    }
    # An embedding's gradient comes as IndexedSlices (the rows looked up): made dense.
    by_variable = {
        id(v): tf.convert_to_tensor(g).numpy() for v, g in zip(variables, grads[len(floats) :])
    }
    native: dict[str, tuple[str, ...]] = {}
    for layer in model.layers:
        own = [v for v in layer.trainable_variables if id(v) in by_variable]
        if not own:
            continue
        if _is_recurrent(keras, layer):
            found, sources = _by_meaning(keras, layer, own, [by_variable[id(v)] for v in own])
            prefix = len("layers[0].")
            for name, value in found.items():
                named[f"{layer.name}/{name[prefix:]}"] = np.asarray(value, np.float64)
            for name, native_name in sources.items():
                native[f"{layer.name}/{name[prefix:]}"] = native_name
            continue
        for variable in own:
            key = f"{layer.name}/{variable.name.split('/')[-1].split(':')[0]}"
            named[key] = np.asarray(by_variable[id(variable)], np.float64)
            native[key] = (f"keras {getattr(variable, 'path', variable.name)}",)
    return GradientArrays(named, native)


def _is_recurrent(keras: Any, layer: Any) -> bool:
    return isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional))


__all__ = ["keras_gradients", "keras_model_gradients", "named_gradients"]
