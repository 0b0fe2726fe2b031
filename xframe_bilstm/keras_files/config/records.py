"""Weights read into the model graph: each layer's record, its weights' shapes checked first.

Recurrent layers are read by :mod:`.recurrent`; every other supported layer here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from ...errors import UnsupportedFeatureError, WeightShapeError
from ...graph import ATTENTION_KINDS, LayerRecord, ModelGraph
from ...graph_ranks import tensor_ranks
from ...shared_layers import calling_again
from ..legacy import activation_name
from ..weights import WeightRef, expect_count
from .attention import attention_record
from .cells import is_stacked
from .convolution import conv_record, conv_transpose_record, depthwise_records, padding_record
from .custom import custom_record
from .normpool import check_group_norm_masks, global_pool_options, normpool_record
from .recurrent import recurrent_record
from .shape_layers import (
    SHAPE_KINDS,
    dot_layer_records,
    rescaling_records,
    shape_record,
    upsampling_records,
)
from .specs import LayerSpec, ModelSpec, sub_config
from .stacked import check_stacked_masks, stacked_records
from .tensor_ops import KIND_BY_CLASS as TENSOR_OP_KINDS
from .tensor_ops import tensor_op_record

WeightReader = Callable[[LayerSpec], list[WeightRef]]


# The kinds of layers read as several records.
_SEVERAL = {
    "upsampling": upsampling_records,
    "rescaling": rescaling_records,
    "depthwise": depthwise_records,
}


def build_graph(spec: ModelSpec, read_weights: WeightReader) -> ModelGraph:
    """Read every layer's weights (shapes checked first) and make the model graph."""
    records: list[LayerRecord] = []
    layers = {layer.name: layer for layer in spec.layers}
    first_calls: dict[str, list[LayerRecord]] = {}
    for layer in spec.layers:
        # A shared layer's later call reads the layer's weights, then holds its first
        # call's arrays.
        owner = layers[layer.shares or layer.name]
        reading = partial(_weights_of, read_weights, owner)
        if is_stacked(layer):  # one record per cell
            made = stacked_records(layer, reading(layer), spec)
        elif layer.kind in _SEVERAL:  # a record per axis, operation or convolution
            made = _SEVERAL[layer.kind](layer, reading(layer), spec)
        elif layer.class_name == "Dot":  # what it computes follows its inputs' ranks
            made = dot_layer_records(layer, reading(layer), spec, tensor_ranks(records))
        else:
            made = [_record(layer, reading, spec)]
        records.extend(calling_again(made, first_calls.setdefault(owner.name, made)))
    outputs = spec.outputs
    if spec.sequential:
        _check_sequential_states(records, spec)
        outputs = records[-1].outputs
    graph = ModelGraph(
        spec.name,
        tuple(records),
        spec.inputs,
        outputs,
        keras_major=spec.major,
        source=spec.source,
    )
    check_stacked_masks(spec, graph)
    check_group_norm_masks(spec, graph)
    return _time_major_inputs(spec, _unmasked_calls(spec, graph))


def _weights_of(read_weights: WeightReader, owner: LayerSpec, _call: LayerSpec) -> list[WeightRef]:
    return read_weights(owner)


def _time_major_inputs(spec: ModelSpec, graph: ModelGraph) -> ModelGraph:
    """``graph`` with each time-major input (a ``TimeFirst`` layer alone reading it, as the
    port of a torch ``forward`` taking (time, batch, ...) or (layers, batch, units)
    writes it) given the first axis Keras holds as its batch axis: its size where the
    file fixes it (the layers), else free."""
    sizes = {layer.name: layer.call.get("batch_size") for layer in spec.layers}
    records = list(graph.layers)
    for index, record in enumerate(records):
        if record.kind == "input" and graph.time_major(record.name):
            shape = (sizes.get(record.name), *record.options["shape"][1:])
            records[index] = replace(record, options={**record.options, "shape": shape})
    return replace(graph, layers=tuple(records))


def _unmasked_calls(spec: ModelSpec, graph: ModelGraph) -> ModelGraph:
    """``graph`` with the mask ended before each recurrent layer Keras 3 runs unmasked
    (called with initial states and no ``mask=``, :mod:`.functional`), where it reads a
    masked tensor: an ``end_mask`` record, so every runner computes what Keras did."""
    unmasked = {layer.name for layer in spec.layers if layer.call.get("unmasked")}
    records: list[LayerRecord] = []
    for record in graph.layers:
        if record.name in unmasked and graph.masked(record.inputs[0]):
            name = f"{record.name}_unmasked"
            records.append(LayerRecord(name, "end_mask", "EndMask", record.inputs[:1]))
            record = replace(record, inputs=(name, *record.inputs[1:]))
        records.append(record)
    return replace(graph, layers=tuple(records))


def _check_sequential_states(records: list[LayerRecord], spec: ModelSpec) -> None:
    # Inside a Sequential, a layer that also returns its states hands a list to the next.
    for record in records[:-1]:
        if len(record.outputs) > 1:
            raise UnsupportedFeatureError(
                f"{spec.source}: layer {record.name!r} ({record.class_name}) returns its "
                "states inside a Sequential, where the next layer would read them as its "
                "input; only the last layer of a Sequential may set return_state=True"
            )


def _record(layer: LayerSpec, read_weights: WeightReader, spec: ModelSpec) -> LayerRecord:
    where = spec.where(layer)
    config = layer.config
    kind = layer.kind
    refs = [] if kind in ("input",) else read_weights(layer)
    if kind in ("input", "masking", "identity", "activation", "flatten", "reshape"):
        expect_count(refs, 0, where)
    if kind in ("zero_padding", "cropping"):
        expect_count(refs, 0, where)
        return padding_record(layer, spec)
    if kind == "conv":
        return conv_record(layer, refs, spec)
    if kind == "conv_transpose":
        return conv_transpose_record(layer, refs, spec)
    options: dict[str, Any]
    weights: dict[str, np.ndarray] = {}
    if kind == "input":
        options = dict(config)
    elif kind == "embedding":
        expect_count(refs, 1, where)
        shape = (int(config["input_dim"]), int(config["output_dim"]))
        weights["embeddings"] = refs[0].read(shape, f"{where} embeddings")
        options = {"mask_zero": bool(config.get("mask_zero", False))}
    elif kind == "masking":
        options = {"mask_value": float(config.get("mask_value", 0.0))}
    elif kind == "identity":
        options = {}
    elif kind == "activation":
        options = {
            "activation": activation_name(config.get("activation"), major=spec.major, where=where)
        }
    elif kind == "flatten":
        _check_channels_last(config, where)
        options = {}
    elif kind == "reshape":
        options = {"target_shape": tuple(int(size) for size in config["target_shape"])}
    elif kind == "global_pool":
        options = global_pool_options(layer.class_name, config)
    elif kind == "concatenate":
        options = {
            "axis": int(config.get("axis", -1)),
            # Keras 2 keeps a step when every input's mask keeps it; Keras 3 when any does.
            "mask_combine": "all" if spec.major < 3 else "any",
        }
    elif kind == "dense":
        return _dense(layer, refs, spec)
    elif kind in SHAPE_KINDS:
        return shape_record(layer, refs, spec, _record)
    elif kind in ("batch_norm", "layer_norm", "group_norm", "pool"):
        return normpool_record(layer, refs, spec)
    elif kind == "custom":
        return custom_record(layer, refs, spec)
    elif kind in ATTENTION_KINDS:
        return attention_record(layer, refs, spec)
    elif layer.class_name in TENSOR_OP_KINDS:
        return tensor_op_record(layer, refs, spec)
    else:
        return recurrent_record(layer, refs, spec)
    return LayerRecord(layer.name, kind, layer.class_name, layer.inputs, options, weights)


def _check_channels_last(config: Mapping[str, Any], where: str) -> None:
    if config.get("data_format", "channels_last") not in (None, "channels_last"):
        raise UnsupportedFeatureError(
            f"{where}: data_format={config['data_format']!r}; only channels_last is supported"
        )


def _dense(layer: LayerSpec, refs: list[WeightRef], spec: ModelSpec) -> LayerRecord:
    where = spec.where(layer)
    config = layer.config
    time_distributed = layer.class_name == "TimeDistributed"
    if time_distributed:
        config = sub_config(config, "layer", layer, spec.source)[1]
    units = int(config["units"])
    use_bias = bool(config.get("use_bias", True))
    expect_count(refs, 2 if use_bias else 1, where)
    if len(refs[0].shape) != 2:
        raise WeightShapeError(f"{where}: kernel has shape {refs[0].shape}; expected 2-D")
    weights = {"kernel": refs[0].read((refs[0].shape[0], units), f"{where} kernel")}
    if use_bias:
        weights["bias"] = refs[1].read((units,), f"{where} bias")
    options = {
        "activation": activation_name(config.get("activation"), major=spec.major, where=where),
        "time_distributed": time_distributed,
    }
    return LayerRecord(layer.name, "dense", layer.class_name, layer.inputs, options, weights)
