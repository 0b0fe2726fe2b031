"""A model graph rebuilt as a functional Keras 3 model of Keras's own layers, weights set.

Each record becomes the Keras layer it was read from (an identity passes its input on,
or is a ``Dropout`` where it keeps a rate; a record sharing another's layer calls that
layer again), so Keras itself computes the masks. The Keras 2 meanings a graph keeps are kept:
activations carry them by name (``hard_sigmoid_keras2``); a Keras 2 ``Concatenate`` of
masked inputs, whose mask Keras 3 cannot compute, and a ``time_major`` layer, an option
Keras 3 no longer has, are refused by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from ..._imports import require
from ...canonical import RecurrentStack
from ...errors import UnsupportedFeatureError
from ...graph import MULTI_INPUT_KINDS, SHAPE_KINDS, LayerRecord, ModelGraph
from ...mask_traps import mask_traps
from .activations import keras_activation
from .attention import KINDS as ATTENTION_KINDS
from .attention import attention_layer, call_attention, set_attention_weights
from .build import canonical_to_keras
from .convolution import KINDS as CONVOLUTION_KINDS
from .convolution import conv_layer, conv_refusal, set_conv_weights
from .initial_weights import lend_initializers
from .normpool import KINDS as NORMPOOL_KINDS
from .normpool import normpool_layer, set_normpool_weights
from .packed import LAYER_KINDS as PACKED_KINDS
from .packed import packed_layer
from .shape_layers import keras_shape_layer, set_shape_weights
from .tensor_ops import LAYER_KINDS as TENSOR_OP_KINDS
from .tensor_ops import tensor_op_layer


def graph_refusal(graph: ModelGraph) -> str | None:
    """Why :func:`graph_to_keras` cannot rebuild ``graph``, or None when it can.

    Example:
        >>> graph = ModelGraph("m", (LayerRecord("x", "input", "InputLayer",
        ...     options={"shape": (None, 3), "dtype": "float32"}),), ("x",), ("x",))
        >>> graph_refusal(graph) is None
        True
    """
    refusals: dict[str, str] = {}
    for record in graph.layers:
        where = f"layer {record.name!r} ({record.class_name})"
        if record.kind == "recurrent" and record.options["time_major"]:
            refusals[record.name] = (
                f"{where}: time_major=True, an option Keras 3's recurrent layers no longer have"
            )
        masked = any(graph.masked(name) for name in record.inputs)
        combine = record.options.get("mask_combine", "any")  # attentions: the query's
        if record.kind in MULTI_INPUT_KINDS and combine != "any" and masked:
            refusals[record.name] = (
                f"{where}: Keras 2 keeps a step where every input's mask keeps it, Keras 3's "
                f"{record.class_name} where any does; a Keras 3 model cannot compute this mask"
            )
        convolution = conv_refusal(record)
        if convolution:
            refusals[record.name] = convolution
    for name, message, refused in mask_traps(graph):
        if refused and name not in refusals:
            refusals[name] = message
    return f"{graph.source}: " + "; ".join(refusals.values()) if refusals else None


def graph_to_keras(
    graph: ModelGraph,
    *,
    dtype: str = "float32",
    unroll: bool = False,
    use_cudnn: Any = "auto",
    hand_over: Callable[[LayerRecord], None] | None = None,
) -> Any:
    """Build a functional ``keras.Model`` computing what ``graph`` describes.

    Args:
        graph: the model.
        dtype: the dtype of the layers and of the float inputs; token ids keep their
            integer dtype.
        unroll: build every recurrent layer with ``unroll=True`` (a kernel path), not only
            those read so.
        use_cudnn: the recurrent layers' ``use_cudnn`` (see
            :func:`~xframe_bilstm.adapters.keras.canonical_to_keras`).
        hand_over: called with each record once its Keras layer holds copies of the
            record's weights; a caller giving the graph away frees the record's arrays
            there, so that the graph's arrays and Keras's variables are never all in
            memory together.

    Returns:
        The model, taking the graph's inputs in order (one tensor when there is one) and
        returning its outputs (one tensor when there is one).

    Raises:
        UnsupportedFeatureError: naming each layer that Keras 3 cannot rebuild
            (:func:`graph_refusal`).

    Example:
        >>> graph = ModelGraph("m", (
        ...     LayerRecord("x", "input", "InputLayer", options={"shape": (2,), "dtype": "f"}),
        ...     LayerRecord("act", "activation", "Activation", ("x",), {"activation": "softmax"})),
        ...     inputs=("x",), outputs=("act",))
        >>> model = graph_to_keras(graph)
        >>> [layer.name for layer in model.layers], model(np.zeros((1, 2))).numpy().tolist()
        (['x', 'act'], [[0.5, 0.5]])
    """
    keras = require("keras")
    refusal = graph_refusal(_unrolled(graph) if unroll else graph)
    if refusal:
        raise UnsupportedFeatureError(refusal)
    kernel = {"unroll": unroll, "use_cudnn": use_cudnn}
    tensors: dict[str, Any] = {}
    built: dict[str, Any] = {}  # each layer, for the records that call it again
    for record in graph.layers:
        if record.kind == "input":
            shape, size = tuple(record.options["shape"]), None
            if graph.time_major(record.name):  # Keras's batch axis is its time or layers
                shape, size = (None, *shape[1:]), shape[0]
            tensors[record.name] = keras.Input(
                shape, batch_size=size, dtype=_input_dtype(record, dtype), name=record.name
            )
            continue
        inputs = [tensors[name] for name in record.inputs]
        if record.kind == "identity" and "rate" not in record.options:
            tensors[record.name] = inputs[0]  # nothing at inference, nothing to train
            continue
        if record.shares:  # a shared layer, holding its weights already
            tensors.update(zip(record.outputs, _called(record, built[record.shares], inputs)))
            if hand_over is not None:
                hand_over(record)
            continue
        if record.kind in ATTENTION_KINDS:
            layer = built[record.name] = attention_layer(record, keras, dtype)
            tensors[record.name] = _called(record, layer, inputs)[0]
            set_attention_weights(record, layer)
            if hand_over is not None:
                hand_over(record)
            continue
        layer = built[record.name] = _layer(record, keras, dtype, kernel, len(inputs[0].shape))
        # Called on its input, the layer builds: its variables are created holding the
        # record's weights where its initializers can be lent, and set afterwards if not.
        restore = _lend_weights(record, layer)
        try:
            made = _called(record, layer, inputs)
        finally:
            created = restore()
        tensors.update(zip(record.outputs, made))
        if not created:
            _set_weights(record, layer)
            set_normpool_weights(record, layer)
        if hand_over is not None:
            hand_over(record)
    return keras.Model(
        _one_or_all([tensors[name] for name in graph.inputs]),
        _one_or_all([tensors[name] for name in graph.outputs]),
        name=graph.name,
    )


def _called(record: LayerRecord, layer: Any, inputs: list[Any]) -> list[Any]:
    """The tensors ``record`` makes, ``layer`` called on ``inputs`` (a recurrent layer
    returning states: its output, then the states)."""
    if record.kind in ATTENTION_KINDS:
        return [call_attention(record, layer, inputs)]
    if record.kind == "recurrent" and len(inputs) > 1:
        # Keras hands a layer its input's mask only when the layer reads one tensor.
        mask = getattr(inputs[0], "_keras_mask", None)
        made = layer(inputs[0], initial_state=inputs[1:], mask=mask)
    else:
        made = layer(inputs if record.kind in MULTI_INPUT_KINDS else inputs[0])
    return made if len(record.outputs) > 1 else [made]


def _unrolled(graph: ModelGraph) -> ModelGraph:
    """``graph`` with every recurrent layer unrolled, to find what unrolling would break."""
    layers = tuple(
        replace(r, options={**r.options, "unroll": True}) if r.kind == "recurrent" else r
        for r in graph.layers
    )
    return replace(graph, layers=layers)


def _one_or_all(tensors: list[Any]) -> Any:
    return tensors[0] if len(tensors) == 1 else tensors


def _input_dtype(record: LayerRecord, dtype: str) -> str:
    """Token ids keep their integer dtype; float inputs take the model's."""
    declared = np.dtype(record.options["dtype"])
    return declared.name if declared.kind in "iu" else dtype


def _activation(name: str) -> Any:
    return "softmax" if name == "softmax" else keras_activation(name)


def _layer(record: LayerRecord, keras: Any, dtype: str, kernel: dict[str, Any], rank: int) -> Any:
    """The Keras layer of ``record`` reading a rank-``rank`` tensor first (a global pool's
    class follows it), not yet built; recurrent layers come built."""
    layers, options, name = keras.layers, record.options, record.name
    if record.kind == "embedding":
        vocabulary, features = record.weights["embeddings"].shape
        return layers.Embedding(
            vocabulary,
            features,
            # The weights are set right after building: skip random initialization.
            embeddings_initializer="zeros",
            mask_zero=bool(options["mask_zero"]),
            dtype=dtype,
            name=name,
        )
    if record.kind == "identity":  # a dropout whose rate is known: kept for training
        return layers.Dropout(float(options["rate"]), dtype=dtype, name=name)
    if record.kind == "masking":
        return layers.Masking(float(options["mask_value"]), dtype=dtype, name=name)
    if record.kind == "recurrent":
        assert record.recurrent is not None
        stack = RecurrentStack(
            (record.recurrent,),
            bool(options["return_sequences"]),
            return_state=bool(options.get("return_state", False)),
        )
        unroll = bool(options["unroll"]) or kernel["unroll"]
        return canonical_to_keras(
            stack, name=name, dtype=dtype, unroll=unroll, use_cudnn=kernel["use_cudnn"]
        )
    if record.kind == "dense":
        dense = layers.Dense(
            record.weights["kernel"].shape[1],
            activation=_activation(str(options["activation"])),
            use_bias="bias" in record.weights,
            kernel_initializer="zeros",
            dtype=dtype,
            name=None if options["time_distributed"] else name,
        )
        if not options["time_distributed"]:
            return dense
        return layers.TimeDistributed(dense, dtype=dtype, name=name)
    if record.kind == "activation":
        return layers.Activation(_activation(str(options["activation"])), dtype=dtype, name=name)
    if record.kind == "flatten":
        return layers.Flatten(dtype=dtype, name=name)
    if record.kind == "reshape":
        return layers.Reshape(tuple(options["target_shape"]), dtype=dtype, name=name)
    if record.kind == "concatenate":
        return layers.Concatenate(axis=int(options["axis"]), dtype=dtype, name=name)
    if record.kind in CONVOLUTION_KINDS:
        return conv_layer(record, keras, dtype)
    if record.kind in NORMPOOL_KINDS:
        return normpool_layer(record, keras, dtype, rank)
    if record.kind in SHAPE_KINDS:
        return keras_shape_layer(record, keras, dtype, kernel, rank, _layer)
    if record.kind == "custom":
        from .custom import custom_keras_layer

        return custom_keras_layer(record, keras, dtype)
    if record.kind in TENSOR_OP_KINDS:
        return tensor_op_layer(record, dtype)
    if record.kind in PACKED_KINDS:
        return packed_layer(record, dtype)
    raise UnsupportedFeatureError(  # pragma: no cover - every kind is handled above
        f"layer {name!r}: no Keras layer for kind {record.kind!r}"
    )


# Kinds whose Keras layer names each weight as the record does and creates it with its
# ``<name>_initializer``.
_LENDING_KINDS = (
    "embedding",
    "dense",
    "conv",
    "conv_transpose",
    "batch_norm",
    "layer_norm",
    "group_norm",
)


def _lend_weights(record: LayerRecord, layer: Any) -> Callable[[], bool]:
    """Lend ``layer`` initializers creating its variables from ``record``'s weights.

    Returns a function that puts the configured initializers back once the layer is built,
    returning whether every weight created its variable (when not, they are set after).
    Recurrent layers come built, holding their weights already.
    """
    if record.kind not in _LENDING_KINDS or not record.weights:
        return lambda: False
    owner = layer
    if record.kind == "dense" and record.options["time_distributed"]:
        owner = layer.layer
    if not all(hasattr(owner, f"{key}_initializer") for key in record.weights):
        return lambda: False
    return lend_initializers(owner, record.weights, f"layer {record.name!r}")


def _set_weights(record: LayerRecord, layer: Any) -> None:
    """Give a built embedding or dense layer the record's weights (recurrent ones have them)."""
    set_conv_weights(record, layer)
    set_normpool_weights(record, layer)
    if record.kind == "embedding":
        layer.set_weights([record.weights["embeddings"]])
    elif record.kind == "dense":
        dense = layer.layer if record.options["time_distributed"] else layer
        dense.set_weights(
            [record.weights[key] for key in ("kernel", "bias") if key in record.weights]
        )
    elif record.kind in SHAPE_KINDS:
        set_shape_weights(record, layer, _set_weights)
    elif record.kind == "custom":
        from .custom import set_custom_weights

        set_custom_weights(record, layer)
    elif record.kind in ("weight_op", "broadcast"):
        layer.set_weights([record.weights["value"]])


__all__ = ["graph_refusal", "graph_to_keras"]
