"""Whole models: run a Keras model (or an ONNX graph of one, or a torch module whose
``forward`` reads as a whole model) and its port, then name the layer where they part.

Both sides run as ``compare(model, against=port)`` runs them: the model by its original
(Keras as loaded or as given, onnxruntime on an ONNX graph, a torch module by its
``forward``; the float64 reference for a Keras 2 file or without Keras), the port by its
own computation (its ``forward``, or onnxruntime on its ONNX export), each in its own
dtype (:func:`~xframe_bilstm.planning.plan_subject`). Where they disagree, the model's
recurrent layers are paired in order with the port's (:mod:`.ports`) and each pair gets
the layer diagnosis: a layer is the one-node case of the same search. Then the weights
of the other layers are compared by meaning with a torch port's modules. Keras and torch
are imported inside functions only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .._imports import require
from ..against import read_against
from ..canonical import RecurrentStack
from ..comparison import (
    Comparison,
    Noise,
    compare_outputs,
    dtype_epsilon,
    least_precise,
    measure_noise,
)
from ..errors import FrameworkUnavailableError, UnsupportedFeatureError
from ..frameworks import FRAMEWORKS
from ..graph import LayerRecord, ModelGraph
from ..inputs import as_list, run_inputs
from ..planning import plan_subject
from ..reference import run_model_reference
from ..sources import Read, name_of, read_source, source_type
from ..stack_graph import as_graph, stack_of
from .attention import WEIGHT_PAIRS as ATTENTION_PAIRS
from .attention import attention_modules, keras_layout
from .normalization import WEIGHT_PAIRS, weight_modules
from .ports import KINDS, PortLayer, children, keras_records, port_layers
from .result import Diagnosis, format_error
from .sides import Flags
from .weights import structure_difference

# What diagnoses one recurrent layer: verdict.diagnose on (expected stack, actual module).
LayerDiagnosis = Callable[..., Diagnosis]
# How each runner is named in the comparison's label.
_RUNNERS = {
    "keras": "run by Keras",
    "onnxruntime": "run by onnxruntime",
    "torch": "run by its forward",
}


def read_once(obj: Any) -> Read | None:
    """``obj`` read, when it is a file, an ONNX graph, a whole Keras model or a torch module
    whose ``forward`` reads as a whole model (read here once, so that whether it is a whole
    model is known from its reading); None for anything else, which :mod:`.sides` reads."""
    if isinstance(obj, (tuple, list)):
        return None
    from ..models.live import is_whole_keras_model
    from ..models.torch_graph import is_whole_module

    if isinstance(obj, (str, os.PathLike)) or source_type(obj) == "ONNX":
        return read_source(obj)
    if is_whole_keras_model(obj):
        return read_source(obj)
    if source_type(obj) == "torch" and is_whole_module(obj):
        try:  # a whole model read from its forward; else, or for a stack, a layer's sides
            read = read_source(obj)
        except UnsupportedFeatureError:
            return None
        return None if stack_of(as_graph(read.reading)) is not None else read
    return None


def diagnose_model(
    read: Read,
    actual: Any,
    diagnose_layer: LayerDiagnosis,
    *,
    inputs: Any,
    lengths: Sequence[int] | np.ndarray | None,
    seed: int,
) -> Diagnosis:
    """Run a whole model (expected) and its port (actual: a torch module, a Keras model or
    an ONNX export) on one input and say why they differ: the first recurrent layer whose
    diagnosis is not ``equivalent``, else the first Embedding or Dense whose weights
    differ, else ``numerical_only`` or ``unknown``.

    ``max_abs_error`` and ``comparison`` are the model outputs'; the message carries the
    layer's own evidence, then the model's error.
    """
    graph = as_graph(read.reading)
    port = _read_port(actual, graph)
    rows = None if lengths is None else list(lengths)
    # Where either side runs at one batch size or length alone (an ONNX export), at those.
    batch, steps = read.batch or port.batch or 3, read.steps or port.steps or 7
    given, _ = run_inputs(graph, inputs, rows, seed=seed, batch=batch, steps=steps)
    expected, expected_dtype, runner = _run(read, graph, given)
    observed, actual_dtype, _ = _run(port, graph, given)
    noise = _noise(graph, as_list(given))
    dtype = least_precise(expected_dtype, actual_dtype)
    # Each side may lie its own rounding from the exact values: they may differ by the sum.
    tolerance = noise.pair_tolerance(dtype_epsilon(expected_dtype), dtype_epsilon(actual_dtype))
    comparison = compare_outputs(
        [f"output {name!r}" for name in graph.outputs],
        expected,
        observed,
        atol=tolerance,
        label=f"expected {graph.source} ({runner}) vs actual {_port_name(actual)}",
    )
    before = comparison.max_abs_error
    if comparison:
        text = f"{dtype} tolerance {format_error(tolerance)}"
        message = f"they agree to {format_error(before)}, within the {text}"
        return Diagnosis("equivalent", ("equivalent",), message, before, comparison)
    notes: list[str] = []
    ported = actual
    if port.framework == "keras" and port.original is not None:  # a file: the model loaded
        ported = port.original()
    found = port_layers(ported, port.framework)
    layer = _recurrent_diagnosis(graph, found, port.framework, diagnose_layer, seed, notes)
    if layer is not None:
        return _from_layer(layer, comparison, notes)
    differ = _weights_differ(graph, ported, port.framework, notes)
    if differ is not None:
        return _verdict("weights_differ", differ, comparison, [*notes, _model_error(comparison)])
    bound = noise.tolerance(dtype_epsilon("float16"))
    if before <= bound and not notes:
        message = (
            f"they differ by up to {format_error(before)}, more than {dtype} rounding explains "
            f"({format_error(tolerance)}) but within the bound for 10-bit-mantissa "
            f"(TF32/float16) rounding ({format_error(bound)}), and every layer matches"
        )
        return _verdict("numerical_only", message, comparison, notes)
    worst = max(comparison.arrays, key=lambda array: array.max_abs_error)
    where = f" ({worst.problem})" if worst.problem else f" at index {worst.worst_index}"
    message = (
        f"no hypothesis explains the difference: max error {format_error(before)} in "
        f"{worst.name}{where}"
    )
    if not notes:
        message += (
            "; every recurrent layer and the Embedding, Dense, normalization and attention "
            "weights match"
        )
    return _verdict("unknown", message, comparison, notes)


def _read_port(actual: Any, graph: ModelGraph) -> Read:
    """``actual`` read as ``compare(model, against=actual)`` reads it; a port whose layers
    the diagnosis can pair: a torch module, a whole Keras model or an ONNX export."""
    kind = source_type(actual) if not isinstance(actual, (tuple, list)) else ""
    from ..models.live import is_whole_keras_model

    keras_model = kind == "keras" and is_whole_keras_model(actual)  # not one of its layers
    port = read_against(actual, graph) if kind in ("torch", "ONNX", "Keras file") else None
    port = read_against(actual, graph) if keras_model else port
    if port is None or port.framework not in KINDS:
        raise UnsupportedFeatureError(
            f"actual: expected is a whole model ({graph.source}), so actual must be its "
            "PyTorch port, a torch.nn.Module whose forward takes the model's inputs (e.g. "
            "keras_to_torch of the model), its Keras port (a keras.Model, e.g. "
            "torch_to_keras of a module), or its ONNX export (e.g. to_onnx of the model), "
            f"whose recurrent layers the diagnosis pairs with the model's; got "
            f"{type(actual).__name__}"
        )
    return port


def _noise(graph: ModelGraph, x: list[np.ndarray]) -> Noise:
    """The model's float32 rounding noise: the reference's, or where it cannot run the
    model (a layer of the user's own class), the torch port's (as ``compare()`` measures)."""
    if FRAMEWORKS["reference"]().supports(graph) is None:
        return measure_noise(graph, x, exact=run_model_reference(graph, x))
    from ..models.to_torch import build_torch
    from ..models.torch_custom import module_noise

    return module_noise(build_torch(graph), x)


def _port_name(actual: Any) -> str:
    return name_of(actual) if source_type(actual) == "ONNX" else type(actual).__name__


def _run(read: Read, graph: ModelGraph, given: Any) -> tuple[tuple[np.ndarray, ...], str, str]:
    """(outputs, the dtype it computed in, how it ran) of one side's original, run as the
    comparison runner runs it; a Keras original without Keras runs as the reference."""
    if read.framework == "keras":
        try:
            require("keras")
        except FrameworkUnavailableError:
            read = Read(graph)
    first = as_list(given)[0]
    subject = plan_subject("diagnosed", read.source, read, len(first), first.shape[1], [], False)
    spec, framework = subject.runs[0]  # on the CPU, in the dtype it computes in
    outputs, _ = framework.run(graph, given, spec, initial_states=None, lengths=None)
    runner = _RUNNERS.get(spec.framework, "float64 reference")
    return tuple(np.asarray(o) for o in outputs), spec.dtype, runner


def _recurrent_diagnosis(
    graph: ModelGraph,
    found: list[PortLayer],
    framework: str,
    diagnose_layer: LayerDiagnosis,
    seed: int,
    notes: list[str],
) -> tuple[str, Diagnosis] | None:
    """(where, diagnosis) of the first recurrent pair that is not ``equivalent``."""
    from ..adapters.torch import canonical_to_torch

    records = [record for record in graph.layers if record.recurrent is not None]
    if len(records) != len(found):
        notes.append(
            f"recurrent layers: {len(records)} in the model "
            f"({', '.join(repr(r.name) for r in records) or 'none'}), {len(found)} in the port "
            f"({', '.join(repr(f[0]) for f in found) or 'none'}), so they were not paired"
        )
        return None
    for record, (name, layer, native) in zip(records, found):
        assert record.recurrent is not None
        sequences = bool(record.options["return_sequences"])
        expected = RecurrentStack((record.recurrent,), return_sequences=sequences)
        ported = RecurrentStack((layer,))
        if native:  # returns what the Keras layer returns, as diagnose asks of native ones
            ported = Flags.of(expected).apply(ported)
        else:
            ported = replace(ported, return_sequences=sequences, return_state=False)
        where = f"{_layer_name(record)}, {KINDS[framework]} {name!r}"
        structure = structure_difference(expected, ported)
        if structure is not None:
            notes.append(f"{where} cannot be compared: {structure}")
            continue
        result = diagnose_layer(expected, canonical_to_torch(ported), seed=seed)
        if result.code != "equivalent":
            return where, result
    return None


def _weights_differ(graph: ModelGraph, actual: Any, framework: str, notes: list[str]) -> str | None:
    """The first Embedding, Dense, normalization or attention layer whose weights differ
    from a torch port's ``nn.Embedding``, ``nn.Linear``, normalization or attention module
    (paired by kind, in order), or None. An ONNX export's other weights are not compared
    (its recurrent nodes are): the note says so."""
    if framework == "keras":
        return _keras_weights_differ(graph, actual, notes)
    if framework != "torch":
        others = [r.name for r in graph.layers if r.weights and r.recurrent is None]
        if others:
            notes.append(
                f"the weights of {', '.join(map(repr, others))} were not compared with the "
                "ONNX graph's initializers"
            )
        return None
    from torch import nn

    modules: dict[str, tuple[type, ...]] = {
        "embedding": (nn.Embedding,),
        "dense": (nn.Linear,),
        **weight_modules(nn),
        **attention_modules(),
    }
    for kind, module_type in modules.items():
        records = [record for record in graph.layers if record.kind == kind]
        found = [(n, m) for n, m in children(actual) if isinstance(m, module_type)]
        if len(records) != len(found):
            notes.append(
                f"{kind} layers: {len(records)} in the model, {len(found)} "
                f"{module_type[0].__name__} modules in the port, so their weights were not "
                "compared"
            )
            continue
        for record, (name, module) in zip(records, found):
            difference = _weight_difference(record, module)
            if difference is not None:
                return f"{_layer_name(record)}, torch {name!r}: {difference}"
    return None


def _keras_weights_differ(graph: ModelGraph, model: Any, notes: list[str]) -> str | None:
    """The first layer with weights, other than a recurrent one, whose weights differ from
    those of the Keras port's layer of the same kind (paired in order), or None."""
    theirs = keras_records(model)
    for kind in dict.fromkeys(r.kind for r in graph.layers if r.weights and not r.recurrent):
        records = [r for r in graph.layers if r.kind == kind]
        found = [r for r in theirs if r.kind == kind]
        if len(records) != len(found):
            notes.append(
                f"{kind} layers: {len(records)} in the model, {len(found)} in the Keras port, "
                "so their weights were not compared"
            )
            continue
        for record, other in zip(records, found):
            for name, expected in record.weights.items():
                got = other.weights.get(name)
                where = f"{_layer_name(record)}, Keras layer {other.name!r}: {name}"
                if got is None or np.shape(got) != np.shape(expected):
                    shape = "missing" if got is None else f"shape {np.shape(got)}"
                    return f"{where} is {shape}, not {np.shape(expected)}"
                if not np.allclose(got, expected, rtol=1e-5, atol=1e-6):
                    error = format_error(float(np.max(np.abs(np.subtract(got, expected)))))
                    return f"{where} differs by up to {error}"
    return None


def _weight_difference(record: LayerRecord, module: Any) -> str | None:
    """How one layer's weights differ from its torch module's, by meaning, or None."""
    from ..adapters.torch import tensor_to_numpy

    if record.kind == "embedding":
        pairs = [("embeddings", "weight", False)]
    elif record.kind in WEIGHT_PAIRS:
        pairs = WEIGHT_PAIRS[record.kind]
    elif record.kind in ATTENTION_PAIRS:
        pairs = ATTENTION_PAIRS[record.kind]
    else:
        pairs = [("kernel", "weight", True), ("bias", "bias", False)]
    for keras_name, torch_name, transposed in pairs:
        expected = record.weights.get(keras_name)
        tensor = _attribute(module, torch_name)
        if expected is None or tensor is None:
            if (expected is None) != (tensor is None):
                side = "the port" if tensor is None else "the model"
                return f"{side} has no {keras_name}"
            continue
        expected = keras_layout(record.kind, keras_name, expected)
        array = tensor_to_numpy(tensor.detach())
        array = array.T if transposed else array
        what = f"{keras_name} vs {torch_name}{'.T' if transposed else ''}"
        what = keras_name if keras_name == torch_name else what
        if expected.ndim != record.weights[keras_name].ndim:
            what += ", heads flattened"
        if array.shape != expected.shape:
            return f"{what}: shape {array.shape} where {expected.shape} was expected"
        difference = np.abs(array.astype(np.float64) - expected.astype(np.float64))
        epsilon = dtype_epsilon(least_precise(array.dtype, expected.dtype))
        if np.any(difference > epsilon * np.abs(expected.astype(np.float64))):
            index = tuple(int(i) for i in np.unravel_index(np.argmax(difference), array.shape))
            return (
                f"{what}: they differ by up to {format_error(float(difference.max()))} at {index}"
            )
    return None


def _attribute(module: Any, dotted: str) -> Any:
    """``module.a.b`` for ``"a.b"``; None where the port's module has no such attribute."""
    for name in dotted.split("."):
        module = getattr(module, name, None)
    return module


def _layer_name(record: LayerRecord) -> str:
    return f"layer {record.name!r} ({record.class_name})"


def _model_error(comparison: Comparison) -> str:
    return f"the model's outputs differ by up to {format_error(comparison.max_abs_error)}"


def _from_layer(
    found: tuple[str, Diagnosis], comparison: Comparison, notes: list[str]
) -> Diagnosis:
    """The whole model's verdict from its first faulty layer's."""
    where, layer = found
    details = tuple(f"{where}: {detail}" for detail in layer.details)
    message = "; ".join([f"{where}: {layer.message}", *notes, _model_error(comparison)])
    return Diagnosis(
        layer.code, layer.causes, message, comparison.max_abs_error, comparison, None, details
    )


def _verdict(code: str, message: str, comparison: Comparison, notes: list[str]) -> Diagnosis:
    message = "; ".join([message, *notes])
    return Diagnosis(code, (code,), message, comparison.max_abs_error, comparison, None, (message,))
