"""The runs of ``compare(..., against=...)``: the second model, by its own computation.

Against recurrent layers, any source of the same layers (its reading must take the same
input); against a whole model, a port of the whole model (a torch module, a Keras model or
an ONNX export of it), which runs by its own computation with the model's outputs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from .canonical import RecurrentStack, initial_state_count
from .errors import UnsupportedFeatureError, WeightShapeError
from .frameworks.base import other_kinds
from .graph import ModelGraph
from .planning import Plan, Subject, plan_subject
from .reference import Reading
from .sources import Read, name_of, read_source, source_type


def plan_against(
    against: Any,
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
    ONNX export of it), which runs by its own computation."""
    read = read_against(against, reading)
    other = read.reading
    if isinstance(reading, RecurrentStack):
        assert isinstance(other, RecurrentStack)
        if other.input_size != reading.input_size:
            raise WeightShapeError(
                f"against: takes {other.input_size} input features where the source takes "
                f"{reading.input_size}; they cannot run on the same input"
            )
        if read.framework == "torch" and states is not None:
            _check_against_states(other, against, len(states))
    own_dtype = read.framework in ("keras", "onnxruntime")  # as its policy or graph says
    return plan_subject(
        "against", against, read, batch, steps, specs, tf32, None if own_dtype else dtypes
    )


def read_against(against: Any, reading: Reading) -> Read:
    """``against`` read; against a graph, its own computation with the graph's outputs."""
    if isinstance(reading, RecurrentStack):
        read = read_source(against)
        if isinstance(read.reading, ModelGraph):
            raise UnsupportedFeatureError(
                f"against: {name_of(against)} is a whole model "
                f"({', '.join(other_kinds(read.reading))}) where the source is recurrent "
                "layers; compare models of the same layers"
            )
        return read
    assert isinstance(reading, ModelGraph)
    kind = source_type(against)
    if kind == "torch" and not isinstance(against, sys.modules["torch"].nn.RNNBase):
        return Read(reading, "torch", lambda: against)
    if kind == "ONNX":  # an export of the model: onnxruntime runs it with the model's inputs
        from .adapters.onnx import load_model

        proto = load_model(against)
        return Read(reading, "onnxruntime", lambda: proto)
    if kind in ("keras", "Keras file"):
        read = read_source(against)
        if read.original is None:
            raise UnsupportedFeatureError(
                f"against: {name_of(against)} was written by Keras 2 (tf_keras): Keras 3 would "
                "run it with its own layer semantics; load it with tf_keras and compare the "
                "live model"
            )
        return Read(reading, "keras", read.original)
    lone = "one recurrent module" if kind == "torch" else "recurrent layers"
    lacking = ", ".join(
        f"{r.name} ({r.class_name})" for r in reading.layers if r.kind not in ("input", "recurrent")
    )
    raise UnsupportedFeatureError(
        f"against: {name_of(against)} ({lone}) cannot stand for {reading.source}, a whole model "
        f"whose layers {lacking} it lacks; compare a port of the "
        "whole model (keras_to_torch of the model, or an nn.Module of your own that runs "
        "every layer), or compare the recurrent layer alone"
    )


def _check_against_states(other: RecurrentStack, module: Any, given: int) -> None:
    expected = initial_state_count(other)
    if given != expected:
        raise WeightShapeError(
            f"initial_states: {given} arrays fit the source, but against "
            f"({name_of(module)}) takes {expected} (every layer's states in Keras "
            "order); compare models with the same layers, or leave initial_states out"
        )


__all__ = ["plan_against", "read_against"]
