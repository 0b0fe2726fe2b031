"""The checks behind ``verify=True`` of the ONNX converters: each result against the original.

- :func:`check_export`: the source in its own framework (a Keras layer's call, a torch
  module's forward, the float64 reference for a :class:`RecurrentStack` or a Keras file read
  without Keras) against the exported graph on onnxruntime.
- :func:`check_graph_export`: a whole Keras model as Keras runs it against its exported
  graph on onnxruntime.
- :func:`check_torch_import`: onnxruntime on the given graph against the torch module.
- :func:`check_keras_import`: onnxruntime on the given graph against the Keras layer.
- :func:`check_canonical_import`: the same against the float64 reference of the stack read.

Each runs both sides once on a small seeded input (batch 2, 7 steps, with initial states and
lengths where the graph takes them) and raises
:class:`~xframe_bilstm.errors.ToleranceExceededError` with the numbers when they differ by
more than float rounding explains. Frameworks are imported inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._imports import require
from .canonical import RecurrentStack, layer_state_names, output_names
from .comparison import Comparison, compare_outputs, derived_tolerance, measure_noise
from .converters import VERIFY_BATCH, VERIFY_STEPS, verification_input
from .correspondence import onnx_source
from .errors import ToleranceExceededError, UnsupportedFeatureError, WeightShapeError
from .onnx_originals import Run, dtype_epsilon, original_of

_FLOAT32_EPSILON = float(np.finfo(np.float32).eps)


def check_export(
    source: Any,
    stack: RecurrentStack,
    model: Any,
    *,
    seed: int,
    with_initial_states: bool,
    with_lengths: bool,
) -> None:
    """Raise unless ``model`` on onnxruntime computes what ``source`` computes itself.

    The inputs are seeded: ``x`` (2, 7, D), random initial states when the graph takes them
    and the source does (a Keras ``Sequential`` takes none: both start at zero), random valid
    lengths when the graph takes them and the source has Keras's mask semantics (a native
    ``nn.LSTM``/``nn.GRU``/``nn.RNN`` has not: its rows are full). The bound is
    :func:`~xframe_bilstm.comparison.derived_tolerance` in float32, or in the source's dtype
    when that is coarser.
    """
    from .adapters.onnx.runtime import graph_feeds
    from .adapters.onnx.verify import RuntimeSession

    session = RuntimeSession(model)
    original = original_of(source, stack)
    x = verification_input(stack, seed=seed).astype(np.float32)
    rng = np.random.default_rng([seed, 1])
    states = None
    if with_initial_states and original.takes_states:
        states = [
            rng.standard_normal((VERIFY_BATCH, layer.units)).astype(np.float32)
            for layer in stack.layers
            for _ in layer_state_names(layer)
        ]
    lengths = None
    if with_lengths and original.takes_lengths:
        lengths = _seeded_lengths(rng)
    expected = original.run(x, states, lengths)
    actual = session.run(graph_feeds(session.proto, x, initial_states=states, lengths=lengths))
    noise = measure_noise(stack, x, initial_states=states, lengths=lengths)
    tolerance = noise.tolerance(max(_FLOAT32_EPSILON, original.epsilon))
    names = output_names(stack)[: len(expected)]
    _raise_unless_close(
        names, expected, actual, tolerance, f"{original.label} vs its ONNX graph on onnxruntime"
    )


def check_graph_export(source: Any, read: Any, model: Any, *, seed: int) -> None:
    """Raise unless ``model`` on onnxruntime computes what the whole model ``read`` computes.

    The original is the live Keras model's call, or a Keras 3 file as Keras loads it; a
    Keras 2 file, or one Keras cannot load or run here, is checked against the float64
    reference. The inputs have right- and left-padded rows
    (:func:`~xframe_bilstm.inputs.example_inputs`); the bound is the model's float32 noise
    on them, scaled to the Keras model's compute dtype when that is coarser.
    """
    from .adapters.onnx.runtime import graph_feeds
    from .adapters.onnx.verify import RuntimeSession
    from .inputs import example_inputs
    from .reference import run_model_reference

    graph = read.reading
    inputs = example_inputs(graph, seed=seed)
    exact = run_model_reference(graph, inputs)
    expected, epsilon, label = (
        exact,
        dtype_epsilon("float64"),
        f"the float64 reference of {graph.source}",
    )
    if read.framework == "keras":
        from .adapters.keras import compute_dtype, register_keras_activations
        from .models.port import call_keras_model

        from_file = isinstance(source, (str, os.PathLike))
        register_keras_activations()  # Keras 2's hard sigmoid, as torch_to_keras saves it
        try:
            keras_model = read.original()
            expected = call_keras_model(keras_model, inputs)
        except Exception as error:  # Keras's own failure to load a file: say so, fall back
            if not from_file:
                raise
            label += f" (Keras could not load or run it: {type(error).__name__}: {error})"
        else:
            epsilon = dtype_epsilon(compute_dtype(keras_model))
            label = f"{graph.source} as Keras {'loads and ' if from_file else ''}runs it"
    session = RuntimeSession(model)
    actual = session.run(graph_feeds(session.proto, tuple(inputs)))
    noise = measure_noise(graph, inputs, exact=exact)
    tolerance = noise.tolerance(max(_FLOAT32_EPSILON, epsilon))
    names = [f"output {name!r}" for name in graph.outputs]
    _raise_unless_close(
        names, expected, actual, tolerance, f"{label} vs its ONNX graph on onnxruntime"
    )


def _seeded_lengths(rng: np.random.Generator) -> np.ndarray:
    lengths = rng.integers(1, VERIFY_STEPS + 1, VERIFY_BATCH)
    lengths[0] = VERIFY_STEPS  # one full row: every step is used somewhere
    return lengths.astype(np.int32)


def check_torch_import(
    model: Any, module: Any, *, seed: int, inputs: Sequence[Any] | None = None
) -> None:
    """Raise unless ``module`` computes what onnxruntime computes on the graph ``model``.

    Both take ``inputs`` (one array per graph input that is not an initializer, in graph
    order), else seeded inputs built from the graph's declared inputs
    (:func:`~xframe_bilstm.adapters.onnx.example_inputs.seeded_graph_inputs`), once per
    value of each boolean input. The bound is ``NOISE_FACTOR`` times this graph's float32
    rounding noise on them, between the floor and the cap of
    :meth:`~xframe_bilstm.comparison.Noise.tolerance`
    (:func:`~xframe_bilstm.adapters.onnx.verify.graph_noise`), in the graph's dtype when that
    is coarser than float32.
    """
    from .adapters.onnx.verify import RuntimeSession, graph_noise, run_torch_graph_module
    from .adapters.torch import evaluating

    session = RuntimeSession(model)
    for names, arrays in _import_inputs(session.proto, seed, inputs):
        expected = session.run(dict(zip(names, arrays)))
        with evaluating(module):
            actual = run_torch_graph_module(module, arrays)
        floats = [a.dtype.name for a in arrays if a.dtype.kind == "f"]  # not token ids
        epsilon = max([_FLOAT32_EPSILON, *(dtype_epsilon(name) for name in floats)])
        tolerance = graph_noise(session.proto, arrays).tolerance(epsilon)
        outputs = [f"output {o.name!r}" for o in session.proto.graph.output]
        _raise_unless_close(
            outputs,
            expected,
            actual,
            tolerance,
            "onnxruntime on the ONNX graph vs its torch module",
        )


def _import_inputs(
    proto: Any, seed: int, given: Sequence[Any] | None
) -> list[tuple[tuple[str, ...], tuple[np.ndarray, ...]]]:
    """(names, arrays) of each input the import is checked on: ``given``, else seeded ones."""
    from .adapters.onnx.example_inputs import seeded_graph_inputs

    if given is None:
        seeded = seeded_graph_inputs(proto, seed=seed, batch=VERIFY_BATCH, steps=VERIFY_STEPS)
        # each branch that a boolean graph input picks
        return [(inputs.names, inputs.arrays) for inputs in seeded.flag_variants()]
    initializers = {i.name for i in proto.graph.initializer}
    names = tuple(i.name for i in proto.graph.input if i.name not in initializers)
    if len(given) != len(names):
        raise WeightShapeError(
            f"inputs: {len(given)} arrays, where the graph takes {len(names)} "
            f"({', '.join(names)}); give one per graph input, in graph order"
        )
    return [(names, tuple(np.asarray(a) for a in given))]


def check_keras_import(model: Any, stack: RecurrentStack, layer: Any, *, seed: int) -> None:
    """Raise unless the Keras ``layer`` computes what onnxruntime computes on ``model``.

    A Keras ``Sequential`` takes no initial states: the graph's state inputs are then fed
    zeros. See :func:`check_stack_import`.
    """
    keras = require("keras")
    from .adapters.keras import run_keras

    check_stack_import(
        model,
        stack,
        lambda x, states, lengths: run_keras(layer, x, initial_states=states, lengths=lengths),
        seed=seed,
        takes_states=not isinstance(layer, keras.Sequential),
        label="its Keras layer",
    )


def check_canonical_import(model: Any, stack: RecurrentStack, *, seed: int) -> None:
    """Raise unless the float64 reference of ``stack`` computes what onnxruntime computes on
    ``model``: the reading is checked against the graph as onnxruntime runs it, not only
    against the interpreter it was identified with. See :func:`check_stack_import`."""
    from .reference import run_reference

    check_stack_import(
        model,
        stack,
        lambda x, states, lengths: run_reference(stack, x, initial_states=states, lengths=lengths),
        seed=seed,
        takes_states=True,
        label="its canonical stack (float64 reference)",
    )


def check_stack_import(
    model: Any,
    stack: RecurrentStack,
    run: Run,
    *,
    seed: int,
    takes_states: bool,
    label: str,
) -> None:
    """Raise unless ``run`` (the import of ``model`` as ``stack``) computes what onnxruntime
    computes on ``model``.

    The outputs of ``run`` are compared with the graph's outputs by meaning, as
    :func:`~xframe_bilstm.onnx_converters.onnx_to_canonical` matched them
    (:func:`~xframe_bilstm.correspondence.onnx_source`): the graph's sequence input read
    batch-major or time-major, whichever reading its outputs agree with (the one its
    structure suggests first). Without ``takes_states``, the graph's state inputs are fed
    zeros. The bound is :func:`~xframe_bilstm.comparison.derived_tolerance` of ``stack``.
    """
    from .adapters.onnx.example_inputs import seeded_graph_inputs
    from .adapters.onnx.verify import RuntimeSession

    session = RuntimeSession(model)
    inputs = seeded_graph_inputs(
        session.proto,
        seed=seed,
        batch=VERIFY_BATCH,
        steps=VERIFY_STEPS,
        zero_states=not takes_states,
    )
    x_graph = inputs.value(inputs.x_name)
    x = x_graph.transpose(1, 0, 2) if inputs.time_major else x_graph
    states = None
    if inputs.state_names and takes_states:
        states = [inputs.value(name) for name in inputs.state_names]
    lengths = None if inputs.lengths_name is None else inputs.value(inputs.lengths_name)
    expected = run(x, states, lengths)
    tolerance = derived_tolerance(stack, x, initial_states=states, lengths=lengths)
    names = output_names(stack)
    outputs = [output.name for output in session.proto.graph.output]
    results: list[Comparison] = []
    refusals: list[UnsupportedFeatureError] = []
    for time_major in (inputs.time_major, not inputs.time_major):
        feeds = inputs.feeds()
        feeds[inputs.x_name] = np.ascontiguousarray(x.transpose(1, 0, 2) if time_major else x)
        try:
            graph = session.run(feeds)
        except UnsupportedFeatureError as error:  # this reading's shapes do not fit the graph
            refusals.append(error)
            continue
        meant = onnx_source(stack, outputs, time_major, VERIFY_BATCH, VERIFY_STEPS, label)
        reading = "time-major" if time_major else "batch-major"
        result = compare_outputs(
            names,
            [meant.provides[meaning][1](graph, None) for meaning in meant.returned[: len(names)]],
            expected,
            atol=tolerance,
            label=f"onnxruntime on the ONNX graph (input read {reading}) vs {label}",
        )
        if result:
            return
        results.append(result)
    if not results:
        raise refusals[0]
    raise ToleranceExceededError(results[0].message())


def _raise_unless_close(
    names: Sequence[str],
    expected: Sequence[np.ndarray],
    actual: Sequence[np.ndarray],
    tolerance: float,
    label: str,
) -> None:
    result = compare_outputs(names, expected, actual, atol=tolerance, label=label)
    if not result:
        raise ToleranceExceededError(result.message())


__all__ = [
    "check_canonical_import",
    "check_export",
    "check_keras_import",
    "check_stack_import",
    "check_torch_import",
]
