"""The runs of ``compare(..., against=...)``: the second model, by its own computation.

Against recurrent layers, any source of the same layers (its reading must take the same
input); against a whole model, a port of the whole model (a torch module, a Keras model or
an ONNX export of it), which runs by its own computation with the model's outputs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from .canonical import layer_state_names
from .errors import UnsupportedFeatureError, WeightShapeError
from .frameworks.base import other_kinds
from .graph import ModelGraph
from .planning import Plan, Subject, plan_subject
from .reference import Reading
from .sources import Read, name_of, read_source, source_type
from .stack_graph import as_graph, state_layers, takes_lengths


def plan_against(
    against: Any,
    read: Read,
    reading: Reading,
    batch: int,
    steps: int,
    states: Sequence[Any] | None,
    specs: Plan,
    dtypes: Sequence[str],
    tf32: bool,
) -> Subject:
    """Runs of the second model on its own framework, on the devices the plan uses.

    A torch module runs by its own ``forward``, in each of ``dtypes``; a state_dict file as
    the native module it holds; a Keras layer or model by its own call, in the dtype its
    policy computes in; a Keras file or a canonical stack as its reading. Against a whole
    model, it must be a port of the whole model (a torch module, a Keras model or an
    ONNX export of it), which runs by its own computation. ``read`` is ``against`` as
    :func:`read_against` reads it."""
    graph = as_graph(reading)
    other = as_graph(read.reading)
    mine, theirs = _features(graph), _features(other)
    if mine != theirs:
        raise WeightShapeError(
            f"against: takes {_listed(theirs)} input features where the source takes "
            f"{_listed(mine)}; they cannot run on the same input"
        )
    if read.framework == "torch" and states is not None:
        _check_against_states(other, against, len(states))
    own_dtype = read.framework in ("keras", "onnxruntime")  # as its policy or graph says
    return plan_subject(
        "against", against, read, batch, steps, specs, tf32, None if own_dtype else dtypes
    )


def _export_sizes(graph: ModelGraph, proto: Any) -> tuple[int | None, int | None]:
    """The length and batch an ONNX export of ``graph`` runs at alone, each None where it
    leaves it free: its first input's declared size on the axis ``graph``'s input leaves
    free (time), and on its first axis."""
    from .adapters.onnx.nodes import data_inputs, declared_dims

    inputs = data_inputs(proto)
    dims = declared_dims(inputs[0]) if inputs else []
    shape = tuple(graph.layer(graph.inputs[0]).options.get("shape", ()))
    free = [axis for axis, size in enumerate(shape) if size is None]
    steps = dims[1 + free[-1]] if free and len(dims) == len(shape) + 1 else None
    return steps, (dims[0] if dims else None)


def read_against(against: Any, graph: ModelGraph) -> Read:
    """``against`` read. Against a graph whose input takes lengths (recurrent layers, whose
    outputs mean a sequence and states whatever returns them), any source of the same
    layers, read as its own layers; against a graph that masks by its values (a whole
    model, whose outputs mean themselves), its own computation with the graph's outputs."""
    if isinstance(against, Read):  # read already: an export checked as the reading it means
        return against
    if takes_lengths(graph):
        read = read_source(against)
        theirs = as_graph(read.reading)
        if not takes_lengths(theirs):
            raise UnsupportedFeatureError(
                f"against: {name_of(against)} is a whole model "
                f"({', '.join(other_kinds(theirs))}) where the source is recurrent "
                "layers; compare models of the same layers"
            )
        return read
    kind = source_type(against)
    if kind == "torch" and not isinstance(against, sys.modules["torch"].nn.RNNBase):
        return Read(graph, "torch", lambda: against)
    if kind == "ONNX":  # an export of the model: onnxruntime runs it with the model's inputs
        from .adapters.onnx import load_model

        proto = load_model(against)
        return Read(graph, "onnxruntime", lambda: proto, *_export_sizes(graph, proto))
    if kind in ("keras", "Keras file"):
        read = read_source(against)
        if read.original is None:
            raise UnsupportedFeatureError(
                f"against: {name_of(against)} was written by Keras 2 (tf_keras): Keras 3 would "
                "run it with its own layer semantics; load it with tf_keras and compare the "
                "live model"
            )
        return Read(graph, "keras", read.original)
    lone = "one recurrent module" if kind == "torch" else "recurrent layers"
    lacking = ", ".join(
        f"{r.name} ({r.class_name})" for r in graph.layers if r.kind not in ("input", "recurrent")
    )
    raise UnsupportedFeatureError(
        f"against: {name_of(against)} ({lone}) cannot stand for {graph.source}, a whole model "
        f"whose layers {lacking} it lacks; compare a port of the "
        "whole model (keras_to_torch of the model, or an nn.Module of your own that runs "
        "every layer), or compare the recurrent layer alone"
    )


def _features(graph: ModelGraph) -> tuple[Any, ...]:
    """The features (last axis) of each of the graph's inputs: what runs on it must take."""
    return tuple(tuple(graph.layer(name).options["shape"])[-1:] for name in graph.inputs)


def _listed(features: tuple[Any, ...]) -> str:
    """``3`` for one input of 3 features, ``[3, 5]`` for several inputs."""
    sizes = [size[0] if size else None for size in features]
    return str(sizes[0]) if len(sizes) == 1 else str(sizes)


def _check_against_states(other: ModelGraph, module: Any, given: int) -> None:
    expected = sum(len(layer_state_names(r.recurrent)) for r in state_layers(other) if r.recurrent)
    if given != expected:
        raise WeightShapeError(
            f"initial_states: {given} arrays fit the source, but against "
            f"({name_of(module)}) takes {expected} (every layer's states in Keras "
            "order); compare models with the same layers, or leave initial_states out"
        )


__all__ = ["plan_against", "read_against"]
