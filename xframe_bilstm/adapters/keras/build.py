"""The canonical form into built Keras 3 layers (or a ``Sequential``) holding its weights."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._imports import require
from ...canonical import RecurrentLayer, RecurrentStack
from ...copies import contiguous_copy
from ...errors import UnsupportedFeatureError, WeightShapeError
from .activations import keras_activation
from .initial_weights import LENT, halves, lend_weights

_CLASS_BY_CELL = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}


def canonical_to_keras(
    stack: RecurrentStack,
    *,
    name: str | None = None,
    batch_size: int | None = None,
    dropout: float = 0.0,
    dtype: str | None = None,
    unroll: bool = False,
    use_cudnn: bool | str = "auto",
) -> Any:
    """Build a Keras 3 layer (one-layer stack) or ``Sequential`` holding ``stack``'s weights.

    A ``"backward"`` layer gets ``go_backwards=True``; a ``"bidirectional"`` one becomes a
    ``Bidirectional`` with an explicit ``backward_layer``, both halves built from the
    canonical weights. Layers take the weights' dtype (e.g. float64 weights give a float64
    layer). A split LSTM/SimpleRNN bias is summed into Keras's single bias (one float
    addition, the only step that is not bit-exact).

    Args:
        stack: the canonical stack.
        name: name of the layer or model; Keras picks one when None.
        batch_size: fixed batch size; required when ``stack.stateful``.
        dropout: rate of ``Dropout`` layers put between the recurrent layers (PyTorch's
            ``dropout`` between stacked layers; active in training only).
        dtype: the layers' dtype (e.g. ``"bfloat16"``); default: the weights' dtype.
        unroll: build the layers with ``unroll=True`` (straight-line operations instead of
            a loop; the same math, another kernel path).
        use_cudnn: the LSTM and GRU layers' ``use_cudnn`` (``False`` keeps a GPU run off
            the cuDNN kernels); Keras's ``"auto"`` by default.

    Returns:
        A built ``keras.layers.Layer`` or ``keras.Sequential`` with the weights set.

    Raises:
        UnsupportedFeatureError: a stateful stack without ``batch_size``.

    Example:
        >>> from xframe_bilstm.adapters.keras import keras_to_canonical
        >>> gru = keras.layers.GRU(2, go_backwards=True)
        >>> gru.build((None, None, 3))
        >>> copy = canonical_to_keras(keras_to_canonical(gru))
        >>> type(copy).__name__, copy.go_backwards
        ('GRU', True)
        >>> all(np.array_equal(a, b) for a, b in zip(gru.get_weights(), copy.get_weights()))
        True
    """
    keras = require("keras")
    if stack.stateful and batch_size is None:
        raise UnsupportedFeatureError(
            "stack.stateful=True needs a fixed batch size to create the state variables; "
            "pass batch_size=..."
        )
    dtype = dtype or np.dtype(stack.layers[0].weights[0].kernel.dtype).name
    last = len(stack.layers) - 1
    built = [
        _build_keras_layer(
            layer,
            keras,
            dtype=dtype,
            return_sequences=stack.return_sequences or index < last,
            return_state=stack.return_state and index == last,
            stateful=stack.stateful,
            name=name if len(stack.layers) == 1 else None,
            kernel_options={"unroll": unroll, "use_cudnn": use_cudnn},
        )
        for index, layer in enumerate(stack.layers)
    ]
    # The kernels are created holding their weights (one buffer each, not a zero-filled
    # one and then the weight); the configured initializers are back before anyone sees it.
    restores = [lend_weights(canonical, layer) for canonical, layer in zip(stack.layers, built)]
    try:
        if len(built) == 1:
            (result,) = built
            result.build((batch_size, None, stack.input_size))
        else:
            inputs = keras.Input(shape=(None, stack.input_size), batch_size=batch_size, dtype=dtype)
            members = [built[0]]
            for layer in built[1:]:
                members += [keras.layers.Dropout(dropout), layer] if dropout else [layer]
            result = keras.Sequential([inputs, *members], name=name)
    finally:
        created = [restore() for restore in restores]
    for canonical, keras_layer, kernels_set in zip(stack.layers, built, created, strict=True):
        set_layer_weights(canonical, keras_layer, kernels_set=kernels_set)
    return result


def _build_keras_layer(
    layer: RecurrentLayer,
    keras: Any,
    *,
    dtype: str,
    return_sequences: bool,
    return_state: bool,
    stateful: bool,
    name: str | None,
    kernel_options: dict[str, Any],
) -> Any:
    def make(go_backwards: bool, half_name: str | None) -> Any:
        options = _keras_options(layer, dtype)
        if kernel_options["unroll"]:
            options["unroll"] = True
        if layer.cell != "simple_rnn" and kernel_options["use_cudnn"] != "auto":
            options["use_cudnn"] = kernel_options["use_cudnn"]  # SimpleRNN has no cuDNN path
        cls = getattr(keras.layers, _CLASS_BY_CELL[layer.cell])
        return cls(
            **options,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            zero_output_for_mask=layer.zero_masked_outputs,
            name=half_name,
        )

    if layer.direction != "bidirectional":
        return make(layer.direction == "backward", name)
    return keras.layers.Bidirectional(
        make(False, None if name is None else f"forward_{name}"),
        backward_layer=make(True, None if name is None else f"backward_{name}"),
        merge_mode=layer.merge_mode,
        name=name,
        # The wrapper casts inputs to its own dtype before the halves see them.
        dtype=dtype,
    )


def _keras_options(layer: RecurrentLayer, dtype: str) -> dict[str, Any]:
    options: dict[str, Any] = {
        "units": layer.units,
        "activation": keras_activation(layer.activation),
        "use_bias": layer.use_bias,
        "dtype": dtype,
        # The weights are set while building: skip random (and QR) initialization.
        "kernel_initializer": "zeros",
        "recurrent_initializer": "zeros",
        "bias_initializer": "zeros",
    }
    if layer.cell != "simple_rnn":
        options["recurrent_activation"] = keras_activation(layer.recurrent_activation)
    if layer.cell == "gru":
        options["reset_after"] = layer.reset_after
    return options


def set_layer_weights(
    layer: RecurrentLayer, keras_layer: Any, *, kernels_set: bool = False
) -> None:
    """Set one canonical layer's weights on its built Keras layer (or Bidirectional).

    Each weight is copied once into Keras's orientation (a transposed canonical view, as
    ``torch_to_keras`` lends, through the banded copy of :mod:`xframe_bilstm.copies`) and
    that array is assigned; one weight's copy is alive at a time.

    Args:
        layer: the canonical layer.
        keras_layer: its built Keras layer (or ``Bidirectional``).
        kernels_set: the kernels and recurrent kernels were created holding their weights
            (:func:`~xframe_bilstm.adapters.keras.initial_weights.lend_weights`): only
            their shapes are checked, and only the biases assigned.
    """
    for half, weights in zip(halves(layer, keras_layer), layer.weights, strict=True):
        arrays = [weights.kernel, weights.recurrent_kernel]
        bias = weights.bias
        if bias is not None:
            # LSTM and SimpleRNN have one Keras bias: only the sum of the rows matters. A
            # reset_after GRU keeps both rows, as Keras's (2, 3H) bias does.
            folds = bias.ndim == 2 and not (layer.cell == "gru" and layer.reset_after)
            arrays.append(bias.sum(axis=0) if folds else bias)
        cell = half.cell
        variables = [cell.kernel, cell.recurrent_kernel, *([cell.bias] if cell.use_bias else [])]
        if len(variables) != len(arrays):
            raise WeightShapeError(
                f"layer {half.name!r} has {len(variables)} weights; the canonical layer gives "
                f"{len(arrays)}"
            )
        for index, (variable, array) in enumerate(zip(variables, arrays, strict=True)):
            if tuple(variable.shape) != array.shape:
                raise WeightShapeError(
                    f"layer {half.name!r}: {variable.path} has shape {tuple(variable.shape)}; "
                    f"the canonical weight has shape {array.shape}"
                )
            if not (kernels_set and index < len(LENT)):
                variable.assign(contiguous_copy(array))
