"""The reference of a model graph: Keras's layers and mask rules, written plainly.

Rules of this module:

- It runs a :class:`~xframe_bilstm.graph.ModelGraph` in float64 (the oracle) or
  float32 (to measure rounding noise), one layer after another, written independently of
  the torch port: recurrent layers run on the shared scan
  (:mod:`~xframe_bilstm.reference.scan`) with the mask as Keras's generic loop reads it
  (any pattern), not on the compaction the port uses.
- Masks follow the Keras rules stated in :mod:`~xframe_bilstm.graph`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import UnsupportedFeatureError
from ..graph import ATTENTION_KINDS, SHAPE_KINDS, LayerRecord, ModelGraph, state_count
from ..masks import mask_from_counts, mask_from_lengths
from ..stack_graph import graph_initial_states
from .attention import run_attention
from .convolution import activate, conv_reference, conv_transpose_reference, pad_or_crop_reference
from .normpool import batch_norm, global_pool, group_norm, layer_norm, pool
from .scan import run_layer
from .shape_layers import combine_masks, run_shape_layer
from .tensor_ops import INDEXED_OPS, held_rows, merged_rows, run_matmul, run_tensor_op
from .tensor_ops import KINDS as TENSOR_OP_KINDS
from .where import run_where


def _recurrent(
    record: LayerRecord,
    x: np.ndarray,
    mask: np.ndarray | None,
    dtype: type,
    initial: Sequence[np.ndarray] = (),
) -> tuple[np.ndarray, ...]:
    """The layer's output, then its final states when it returns them (Keras order)."""
    layer = record.recurrent
    assert layer is not None
    time_major = bool(record.options["time_major"])
    if time_major:
        x = np.swapaxes(x, 0, 1)
    states: list[np.ndarray] = [np.asarray(state, dtype) for state in initial] or [
        np.zeros((x.shape[0], layer.units), dtype) for _ in range(state_count(layer))
    ]
    outputs, finals = run_layer(
        layer,
        x.astype(dtype),
        states,
        mask,
        return_sequences=bool(record.options["return_sequences"]),
        dtype=dtype,
    )
    if time_major and record.options["return_sequences"]:
        outputs = tuple(np.swapaxes(y, 0, 1) for y in outputs)
    return (*outputs, *finals) if record.options.get("return_state") else outputs


def run_model_reference(
    graph: ModelGraph,
    inputs: Sequence[np.ndarray],
    *,
    dtype: type = np.float64,
    initial_states: Sequence[np.ndarray] | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Run ``graph`` on ``inputs`` (one array per model input) in ``dtype``.

    ``initial_states`` start the recurrent layers that read none from the model (every
    such layer's states in Keras order, layer after layer; default zeros); ``lengths``
    (valid steps per row) mask the inputs marked ``lengths`` (a stack's input).

    Example:
        >>> from xframe_bilstm.graph import LayerRecord, ModelGraph
        >>> graph = ModelGraph("m", (
        ...     LayerRecord("x", "input", "InputLayer", options={"shape": (2,), "dtype": "f"}),
        ...     LayerRecord("act", "activation", "Activation", ("x",), {"activation": "softmax"})),
        ...     inputs=("x",), outputs=("act",))
        >>> run_model_reference(graph, [np.zeros((1, 2))])[0].tolist()
        [[0.5, 0.5]]
    """
    values: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray | None] = {}
    for name, array in zip(graph.inputs, inputs, strict=True):
        values[name] = np.asarray(array)
        by_lengths = lengths is not None and graph.layer(name).options.get("lengths")
        masks[name] = mask_from_lengths(lengths, *array.shape[:2]) if by_lengths else None
    batch = int(np.shape(inputs[0])[0]) if len(inputs) else 0
    starts = graph_initial_states(graph, initial_states, batch, dtype)
    for record in graph.layers:
        if record.kind == "input":
            continue
        x = values[record.inputs[0]]
        mask = masks[record.inputs[0]]
        options = record.options
        out_mask = mask if record.mask_rule == "keep" else None
        if record.kind == "embedding":
            y = record.weights["embeddings"].astype(dtype)[x]
            out_mask = (x != 0) if options["mask_zero"] else None
        elif record.kind == "masking":
            out_mask = np.asarray(np.any(x != options["mask_value"], axis=-1))
            y = np.where(out_mask[..., None], x, 0).astype(dtype)
        elif record.kind in ("identity", "end_mask"):
            y = x
        elif record.kind == "time_first":
            y = np.swapaxes(x, 0, 1)
        elif record.kind == "merged_rows":
            y = merged_rows(x, bool(options["time_first"]))
        elif record.kind == "broadcast":
            value: np.ndarray = held_rows(record.weights["value"], options, x.shape)
            y = np.broadcast_to(value.astype(dtype), (x.shape[0], *value.shape)).copy()
        elif record.kind == "lengths_mask":
            y = x
            out_mask = mask_from_counts(values[record.inputs[1]], *x.shape[:2])
        elif record.kind == "valid_steps":
            y = mask_from_counts(values[record.inputs[1]], *x.shape[:2]).astype(dtype)
        elif record.kind == "recurrent":
            initial = starts.get(record.name) or [values[name] for name in record.inputs[1:]]
            y, *rest = _recurrent(record, x, mask, dtype, initial)
            values.update(zip(record.outputs[1:], rest))
            masks.update(dict.fromkeys(record.outputs[1:]))
            out_mask = mask if options["return_sequences"] else None
        elif record.kind == "dense":
            y = x.astype(dtype) @ record.weights["kernel"].astype(dtype)
            if "bias" in record.weights:
                y = y + record.weights["bias"].astype(dtype)
            y = activate(str(options["activation"]), y)
        elif record.kind == "activation":
            y = activate(str(options["activation"]), x.astype(dtype))
        elif record.kind == "flatten":
            y = x.reshape(x.shape[0], -1)
        elif record.kind == "reshape":
            y = x.reshape((x.shape[0], *options["target_shape"]))
        elif record.kind == "global_pool":
            y = global_pool(options, x, mask)
        elif record.kind == "batch_norm":
            y = batch_norm(record, x, dtype)
        elif record.kind == "layer_norm":
            y = layer_norm(record, x, dtype)
        elif record.kind == "group_norm":
            y = group_norm(record, x, dtype)
        elif record.kind == "pool":
            y = pool(options, x, dtype)
        elif record.kind == "concatenate":
            tensors = [values[name] for name in record.inputs]
            y = np.concatenate(tensors, axis=int(options["axis"]))
            in_masks = [masks[name] for name in record.inputs]
            how, axis = str(options["mask_combine"]), int(options["axis"])
            out_mask = combine_masks(tensors, in_masks, how, axis)
        elif record.kind == "conv":
            y = conv_reference(options, record.weights, x, dtype, record.name)
            y = activate(str(options["activation"]), y)
        elif record.kind == "conv_transpose":
            y = conv_transpose_reference(options, record.weights, x, dtype)
            y = activate(str(options["activation"]), y)
        elif record.kind in ("zero_padding", "cropping"):
            y = pad_or_crop_reference(record.kind, options, x)
        elif record.kind in SHAPE_KINDS:
            tensors = [values[name] for name in record.inputs]
            in_masks = [masks[name] for name in record.inputs]
            y, out_mask = run_shape_layer(record, tensors, in_masks, dtype, run_model_reference)
        elif record.kind in TENSOR_OP_KINDS:
            y = run_tensor_op(record.kind, options, x, dtype, record.weights)
        elif record.kind == "matmul":
            y = run_matmul(options, [values[name] for name in record.inputs], dtype)
        elif record.kind == "where":
            y = run_where(options, [values[name] for name in record.inputs], dtype)
        elif record.kind in INDEXED_OPS:
            y = INDEXED_OPS[record.kind](options, [values[name] for name in record.inputs])
        elif record.kind in ATTENTION_KINDS:
            tensors = [values[name] for name in record.inputs]
            y = run_attention(record, tensors, [masks[name] for name in record.inputs], dtype)
        elif record.kind == "custom":
            from ..custom import custom_refusal

            raise UnsupportedFeatureError(
                f"{graph.source}: {custom_refusal(record, 'the float64 reference')}"
            )
        else:  # pragma: no cover - every kind is handled above
            raise UnsupportedFeatureError(f"no reference for {record.kind}")
        values[record.name] = y
        masks[record.name] = out_mask
    return tuple(values[name] for name in graph.outputs)


__all__ = ["run_model_reference"]
