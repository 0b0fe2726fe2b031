"""Whole models (a :class:`~xframe_bilstm.graph.ModelGraph`) to ONNX models of standard
operators, computing what :mod:`xframe_bilstm.reference.graph` computes.

``Embedding`` is ``Gather``; ``Dense`` is ``MatMul`` and ``Add`` and its activation;
``Masking``, ``Embedding(mask_zero=True)`` and a packed sequence's lengths
(:mod:`.packed_export`) make a (B, T) bool mask that follows the Keras rules of
:mod:`xframe_bilstm.graph`; recurrent layers are native ``LSTM``/``GRU``/``RNN`` nodes
(:func:`~xframe_bilstm.adapters.onnx.layer_export.export_layer`), under a mask as
:mod:`.masked` runs them. Graph inputs and outputs are named after the model's, batch and
time dynamic; token ids are int64, other integer inputs (lengths) keep their integer
dtype (:mod:`.graph_inputs`). onnx is imported inside the functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._imports import require
from ...errors import UnsupportedFeatureError
from ...graph import LayerRecord, ModelGraph
from ...graph_ranks import tensor_ranks
from ...mask_traps import mask_traps
from .activation_export import COMPOSITE_ACTIVATIONS, composite_activation
from .attention_export import KINDS as ATTENTION_KINDS
from .attention_export import emit_attention
from .broadcast_export import EMITTERS as BROADCAST_EMITTERS
from .builder import GraphBuilder
from .convolution_export import conv_node, conv_transpose_node, pad_or_crop_node
from .export import FLOAT_TYPES
from .graph_inputs import graph_inputs
from .layer_export import export_layer
from .masked import masked_recurrent
from .normpool_export import KINDS as NORMPOOL_KINDS
from .normpool_export import export_normpool
from .packed_export import EMITTERS as PACKED_EMITTERS
from .packed_export import emit_lengths_mask, emit_valid_steps
from .shape_export import (
    emit_merge,
    emit_time_distributed,
    shape_emitters,
    shape_refusals,
)
from .state_export import recurrent_with_states
from .tensor_ops_export import EMITTERS as TENSOR_OP_EMITTERS
from .tensor_ops_export import (
    INDEXED_EMITTERS,
    emit_matmul,
    emit_where,
)
from .vocabulary import activation_refusal, ir_version

# CumSum, ScatterElements and Unsqueeze's axes input: the oldest opset this export writes.
GRAPH_OPSET = 13
# From this opset on, ReduceMax and ReduceMean take their axes as an input.
_REDUCE_AXES_INPUT = 18

# Keras activations (canonical names) as one ONNX operator and its attributes.
_SELU = {"alpha": 1.6732632423543772, "gamma": 1.0507009873554805}
_ACTIVATION_OPS: dict[str, tuple[str, dict[str, Any]]] = {
    "tanh": ("Tanh", {}),
    "sigmoid": ("Sigmoid", {}),
    "relu": ("Relu", {}),
    "hard_sigmoid_keras3": ("HardSigmoid", {"alpha": 1.0 / 6.0, "beta": 0.5}),
    "hard_sigmoid_keras2": ("HardSigmoid", {"alpha": 0.2, "beta": 0.5}),
    "linear": ("Identity", {}),
    "softsign": ("Softsign", {}),
    "softplus": ("Softplus", {}),
    "elu": ("Elu", {"alpha": 1.0}),
    "selu": ("Selu", _SELU),
    "exponential": ("Exp", {}),
    "softmax": ("Softmax", {"axis": -1}),
}


def graph_export_refusal(graph: ModelGraph, opset: int) -> str | None:
    """Why :func:`graph_to_onnx` cannot export ``graph`` at ``opset``, or None when it can.

    Example:
        >>> graph = ModelGraph("m", (LayerRecord("x", "input", "InputLayer",
        ...     options={"shape": (None, 3), "dtype": "float32"}),), ("x",), ("x",))
        >>> graph_export_refusal(graph, 11)
        'opset=11: a whole model exports from opset 13 on (CumSum, ScatterElements)'
    """
    if opset < GRAPH_OPSET:
        return (
            f"opset={opset}: a whole model exports from opset {GRAPH_OPSET} on "
            "(CumSum, ScatterElements)"
        )
    refusals = [message for _, message, refused in mask_traps(graph) if refused]
    ranks = tensor_ranks(graph.layers)
    for record in graph.layers:
        where = f"layer {record.name!r} ({record.class_name})"
        activation = record.options.get("activation")
        activated = record.kind in ("dense", "activation", "conv", "conv_transpose")
        if activated and activation not in (*_ACTIVATION_OPS, *COMPOSITE_ACTIVATIONS):
            refusals.append(f"{where}: activation {activation!r} has no ONNX export")
        if record.kind == "custom":
            from ...custom import custom_refusal

            refusals.append(custom_refusal(record, "an ONNX export of standard operators"))
        if record.kind == "recurrent":
            layer = record.recurrent
            assert layer is not None
            if layer.direction == "bidirectional" and layer.merge_mode is None:
                refusals.append(
                    f"{where}: merge_mode=None returns two tensors; export merged outputs"
                )
            activations = activation_refusal(layer)
            if activations:
                refusals.append(f"{where}: {activations}")
        masked = record.kind == "concatenate" and any(map(graph.masked, record.inputs))
        if masked and (ranks[record.name] != 3 or int(record.options["axis"]) not in (-1, 2)):
            refusals.append(
                f"{where}: axis={record.options['axis']} of masked rank-"
                f"{ranks[record.name]} tensors; only masked sequences joined along "
                "their features are exported"
            )
    refusals.extend(shape_refusals(graph, ranks, {*_EMITTERS, *NORMPOOL_KINDS}))
    refusals.extend(  # ONNX operators take one type: int64 ids meet float constants
        f"layer {name!r}: reads an integer input as numbers" for name in graph.ids_read_as_numbers()
    )
    return f"{graph.source}: " + "; ".join(refusals) if refusals else None


def graph_to_onnx(graph: ModelGraph, *, opset: int, dtype: str = "float32") -> Any:
    """Build an ONNX model computing what the Keras model ``graph`` describes computes.

    Args:
        graph: the model.
        opset: default-domain opset, at least :data:`GRAPH_OPSET`.
        dtype: ``"float32"`` or ``"float16"``: the weights, float inputs and outputs.

    Returns:
        An ``onnx.ModelProto`` (not yet checked) whose inputs are the model's inputs (token
        ids read by an ``Embedding`` as int64) and whose outputs are its outputs.

    Raises:
        UnsupportedFeatureError: naming each layer (and its class) that is not exported.

    Example:
        >>> graph = ModelGraph("m", (
        ...     LayerRecord("x", "input", "InputLayer", options={"shape": (2,), "dtype": "f"}),
        ...     LayerRecord("act", "activation", "Activation", ("x",), {"activation": "softmax"})),
        ...     inputs=("x",), outputs=("act",))
        >>> model = graph_to_onnx(graph, opset=17)
        >>> [n.op_type for n in model.graph.node], [o.name for o in model.graph.output]
        (['Softmax', 'Identity'], ['act'])
    """
    onnx = require("onnx")
    refusal = graph_export_refusal(graph, opset)
    if refusal:
        raise UnsupportedFeatureError(refusal)
    if dtype not in FLOAT_TYPES:
        raise UnsupportedFeatureError(f"dtype={dtype!r}: expected one of {sorted(FLOAT_TYPES)}")
    builder = GraphBuilder(onnx, opset, np.dtype(dtype))
    builder.shared = {record.name: record.shares for record in graph.layers if record.shares}
    float_type = getattr(onnx.TensorProto, FLOAT_TYPES[dtype])
    for name in (*graph.inputs, *graph.outputs):
        builder.name(name)  # the interface's names stay free of internal tensors
    ranks = tensor_ranks(graph.layers)
    inputs = graph_inputs(onnx, graph, float_type)
    values: dict[str, str] = {name: name for name in graph.inputs}
    masks: dict[str, str | None] = dict.fromkeys(graph.inputs)
    for record in graph.layers:
        if record.kind == "recurrent" and len(record.inputs) + len(record.outputs) > 2:
            x = record.inputs[0]
            states = [values[name] for name in record.inputs[1:]]
            made = recurrent_with_states(builder, record, values[x], masks[x], states)
            values.update(zip(record.outputs, made))
            masks.update(dict.fromkeys(record.outputs))
            masks[record.name] = masks[x] if record.options["return_sequences"] else None
        elif record.kind == "matmul":
            pair = [values[name] for name in record.inputs]
            values[record.name], masks[record.name] = emit_matmul(
                builder, record, pair, ranks[record.name]
            )
        elif record.kind == "where":
            pair = [values[name] for name in record.inputs]
            values[record.name], masks[record.name] = emit_where(builder, record, pair)
        elif record.kind == "time_first":  # (time, batch, ...), as a torch forward returns it
            perm = [1, 0, *range(2, ranks[record.name])]
            values[record.name] = builder.one(
                "Transpose", [values[record.inputs[0]]], record.name, perm=perm
            )
            masks[record.name] = None
        elif record.kind == "merged_rows":  # (batch * time, ...), as a loss reads the steps
            x, rank = values[record.inputs[0]], ranks[record.inputs[0]]
            values[record.name] = _merged_rows(builder, record, x, rank)
            masks[record.name] = None
        elif record.kind in ("lengths_mask", "valid_steps"):
            x, lengths = (values[name] for name in record.inputs)
            emit = emit_lengths_mask if record.kind == "lengths_mask" else emit_valid_steps
            values[record.name], masks[record.name] = emit(builder, record, x, lengths)
        elif record.kind != "input":
            values[record.name], masks[record.name] = _layer(builder, record, values, masks, ranks)
    outputs = []
    kinds = {record.name: record.kind for record in graph.layers}
    for name in graph.outputs:
        builder.op("Identity", [values[name]], name, output_names=[name])
        dims = ["batch", *[None] * (ranks[name] - 1)]
        if kinds.get(name) == "time_first":
            dims[:2] = [None, "batch"]
        elif kinds.get(name) == "merged_rows":
            dims[0] = "rows"
        outputs.append(onnx.helper.make_tensor_value_info(name, float_type, dims))
    onnx_graph = onnx.helper.make_graph(
        builder.nodes, graph.name, inputs, outputs, initializer=builder.initializers
    )
    return onnx.helper.make_model(
        onnx_graph,
        opset_imports=[onnx.helper.make_opsetid("", opset)],
        ir_version=ir_version(onnx, opset),
        producer_name="xframe_bilstm",
    )


def _merged_rows(builder: GraphBuilder, record: LayerRecord, x: str, rank: int) -> str:
    """(batch, time, ...) ``x`` of ``rank`` with those axes in one, step by step where the
    record's ``time_first`` (a ``Transpose`` first), else row by row."""
    name = record.name
    if record.options["time_first"]:
        x = builder.one("Transpose", [x], f"{name}/time_first", perm=[1, 0, *range(2, rank)])
    shape = builder.one("Shape", [x], f"{name}/shape")
    bounds = [builder.ints("two", [2]), builder.ints("end", [rank])]
    rest = builder.one("Slice", [shape, *bounds], f"{name}/rest")
    first = builder.ints("minus_one", [-1])
    target = builder.one("Concat", [first, rest], f"{name}/target", axis=0)
    return builder.one("Reshape", [x, target], name)


Emitted = tuple[str, str | None]  # a layer's output, and its (B, T) bool mask or None


def _layer(
    builder: GraphBuilder,
    record: LayerRecord,
    values: dict[str, str],
    masks: dict[str, str | None],
    ranks: dict[str, int],
) -> Emitted:
    """One layer's output and mask, from the outputs and masks of the layers it reads."""
    if record.kind == "concatenate":
        tensors = [values[name] for name in record.inputs]
        y = builder.one("Concat", tensors, record.name, axis=int(record.options["axis"]))
        return y, _combined_mask(builder, record, tensors, [masks[n] for n in record.inputs])
    if record.kind == "merge":
        tensors = [values[name] for name in record.inputs]
        in_masks = [masks[name] for name in record.inputs]
        return emit_merge(builder, record, tensors, in_masks, _combined_mask)
    if record.kind in ATTENTION_KINDS:
        tensors = [values[name] for name in record.inputs]
        return emit_attention(builder, record, tensors, [masks[n] for n in record.inputs])
    if record.kind in INDEXED_EMITTERS:
        tensors = [values[name] for name in record.inputs]
        return INDEXED_EMITTERS[record.kind](builder, record, tensors)
    x = record.inputs[0]
    return _single_input(builder, record, values[x], masks[x], ranks[x])


def _single_input(
    builder: GraphBuilder, record: LayerRecord, x: str, mask: str | None, rank: int
) -> Emitted:
    """A layer of one input ``x`` of ``rank``: normalizations and pools follow the channel
    axis by the rank, and a ``TimeDistributed`` runs its layer on one rank fewer."""
    if record.kind in NORMPOOL_KINDS:
        return export_normpool(builder, record, x, mask, rank)
    if record.kind == "time_distributed":
        return emit_time_distributed(
            builder, record, x, mask, lambda b, r, y: _single_input(b, r, y, None, rank - 1)[0]
        )
    return _EMITTERS[record.kind](builder, record, x, mask)


def _weight(builder: GraphBuilder, record: LayerRecord, key: str) -> str:
    array = record.weights[key].astype(builder.float_dtype)
    return builder.constant(f"{record.name}/{key}", array)


def _embedding(builder: GraphBuilder, record: LayerRecord, x: str, mask: str | None) -> Emitted:
    y = builder.one("Gather", [_weight(builder, record, "embeddings"), x], record.name, axis=0)
    if not record.options["mask_zero"]:
        return y, None
    zero = builder.constant("zero_id", np.zeros((), np.int64))
    padding = builder.one("Equal", [x, zero], f"{record.name}/padding")
    return y, builder.one("Not", [padding], f"{record.name}/mask")


def _masking(builder: GraphBuilder, record: LayerRecord, x: str, mask: str | None) -> Emitted:
    """A step is valid where any feature differs from ``mask_value``; masked steps are 0."""
    prefix, types = record.name, builder.onnx.TensorProto
    value = np.asarray(record.options["mask_value"], builder.float_dtype)
    equal = builder.one("Equal", [x, builder.constant(f"{prefix}/mask_value", value)], prefix)
    differs = builder.one("Not", [equal], f"{prefix}/differs")
    differs = builder.one("Cast", [differs], f"{prefix}/differs_float", to=types.FLOAT)
    any_differs = _reduce(builder, "ReduceMax", differs, -1, False, f"{prefix}/any")
    new_mask = builder.one("Cast", [any_differs], f"{prefix}/mask", to=types.BOOL)
    return _zeroed(builder, new_mask, x, prefix), new_mask


def _dense(builder: GraphBuilder, record: LayerRecord, x: str, mask: str | None) -> Emitted:
    y = builder.one("MatMul", [x, _weight(builder, record, "kernel")], f"{record.name}/matmul")
    if "bias" in record.weights:
        y = builder.one("Add", [y, _weight(builder, record, "bias")], f"{record.name}/add")
    return _activate(builder, str(record.options["activation"]), y, record.name), mask


def _reshape(builder: GraphBuilder, record: LayerRecord, x: str, mask: str | None) -> Emitted:
    shape = builder.ints(f"{record.name}/shape", [0, *record.options["target_shape"]])
    return builder.one("Reshape", [x, shape], record.name), None


_EMITTERS = {
    "embedding": _embedding,
    "masking": _masking,
    "identity": lambda b, r, x, m: (b.one("Identity", [x], r.name), m),
    "recurrent": lambda b, r, x, m: (
        _recurrent(b, r, x, m),
        m if r.options["return_sequences"] else None,
    ),
    "dense": _dense,
    "activation": lambda b, r, x, m: (_activate(b, str(r.options["activation"]), x, r.name), m),
    "flatten": lambda b, r, x, m: (b.one("Flatten", [x], r.name, axis=1), None),
    "reshape": _reshape,
    "conv": lambda b, r, x, m: (
        _activate(b, str(r.options["activation"]), conv_node(b, r, x), r.name),
        None,
    ),
    "conv_transpose": lambda b, r, x, m: (
        _activate(b, str(r.options["activation"]), conv_transpose_node(b, r, x), r.name),
        None,
    ),
    "zero_padding": lambda b, r, x, m: (pad_or_crop_node(b, r, x), None),
    "cropping": lambda b, r, x, m: (pad_or_crop_node(b, r, x), None),
}
_EMITTERS.update(shape_emitters())
_EMITTERS.update(TENSOR_OP_EMITTERS)
_EMITTERS.update(PACKED_EMITTERS)
_EMITTERS.update(BROADCAST_EMITTERS)


def _zeroed(builder: GraphBuilder, mask: str, x: str, prefix: str) -> str:
    """``x`` (B, T, F) with its masked steps set to zero."""
    keep = builder.one("Unsqueeze", [mask, builder.ints("axes2", [2])], f"{prefix}/mask3")
    zero = builder.constant("zero_float", np.zeros((), builder.float_dtype))
    return builder.one("Where", [keep, x, zero], prefix)


def _reduce(builder: GraphBuilder, op: str, x: str, axis: int, keepdims: bool, hint: str) -> str:
    """``op`` over one axis, with the axes as an attribute or an input as ``op`` takes them."""
    since = 13 if op == "ReduceSum" else _REDUCE_AXES_INPUT
    keep = int(keepdims)
    if builder.opset >= since:
        return builder.one(op, [x, builder.ints(f"axes{axis}", [axis])], hint, keepdims=keep)
    return builder.one(op, [x], hint, axes=[axis], keepdims=keep)


def _activate(builder: GraphBuilder, name: str, x: str, prefix: str) -> str:
    if name == "linear":
        return builder.one("Identity", [x], prefix)
    if name == "silu":
        return builder.one("Mul", [x, builder.one("Sigmoid", [x], f"{prefix}/sigmoid")], prefix)
    composite = composite_activation(builder, name, x, prefix)
    if composite is not None:
        return composite
    op, attributes = _ACTIVATION_OPS[name]
    return builder.one(op, [x], prefix, **attributes)


def _recurrent(builder: GraphBuilder, record: LayerRecord, x: str, mask: str | None) -> str:
    layer = record.recurrent
    assert layer is not None
    return_sequences = bool(record.options["return_sequences"])
    if mask is not None:  # time_major under a mask is refused
        return masked_recurrent(
            builder, layer, record.name, x, mask, return_sequences=return_sequences
        )
    time_major = bool(record.options["time_major"])
    sequence = (
        x
        if time_major
        else builder.one("Transpose", [x], f"{record.name}/time_major", perm=[1, 0, 2])
    )
    y = export_layer(
        builder,
        layer,
        record.name,
        sequence,
        [],
        None,
        return_sequences=return_sequences,
        keep_padding=False,
    )[0]
    if return_sequences and not time_major:
        y = builder.one("Transpose", [y], f"{record.name}/batch_major", perm=[1, 0, 2])
    return y


def _combined_mask(
    builder: GraphBuilder, record: LayerRecord, tensors: list[str], masks: list[str | None]
) -> str | None:
    """A step is kept where any (Keras 3) or every (Keras 2) input keeps it."""
    if all(mask is None for mask in masks):
        return None
    full = []
    for index, (tensor, mask) in enumerate(zip(tensors, masks)):
        if mask is None:
            shape = builder.one("Shape", [tensor], f"{record.name}/shape{index}")
            batch_time = [builder.ints("start0", [0]), builder.ints("end2", [2])]
            shape = builder.one("Slice", [shape, *batch_time], f"{record.name}/batch_time{index}")
            mask = builder.one(
                "ConstantOfShape",
                [shape],
                f"{record.name}/all_valid{index}",
                value=builder.onnx.helper.make_tensor(
                    "true", builder.onnx.TensorProto.BOOL, [1], [True]
                ),
            )
        full.append(mask)
    op = "Or" if record.options["mask_combine"] == "any" else "And"
    combined = full[0]
    for index, other in enumerate(full[1:]):
        combined = builder.one(op, [combined, other], f"{record.name}/mask{index}")
    return combined
