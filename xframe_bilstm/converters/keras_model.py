"""PyTorch → Keras for a whole-model port (:class:`~xframe_bilstm.models.to_torch.KerasModel`).

Such a module came from a Keras model (:func:`~xframe_bilstm.keras_to_torch`) and keeps
the graph it was built from; it is read back through that graph with the weights its
parameters hold now (:func:`~xframe_bilstm.models.torch_readback.current_graph`), rebuilt
in Keras, and checked against the module's own ``forward``, ``module(*inputs)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from .._imports import require
from ..comparison import Noise, check_port, least_precise, measure_noise
from ..graph import ModelGraph
from ..models.graph_structure import release_weights


def keras_model_to_keras(
    module: Any,
    *,
    verify: bool,
    seed: int,
    name: str | None,
    custom_modules: Mapping[Any, Callable[[Any], Any]] | None = None,
) -> Any:
    """The functional ``keras.Model`` of a ``KerasModel`` port, checked against it.

    Args:
        module: the port.
        verify: run both on seeded inputs (with padded rows, as the port was checked on)
            and raise :class:`~xframe_bilstm.errors.ToleranceExceededError` if they disagree.
        seed: seed of those inputs.
        name: the Keras model's name (the module's own graph name when None).
        custom_modules: a factory per custom layer's module class (or class name), given the
            module as it is now and returning its Keras layer.

    Raises:
        UnsupportedFeatureError: a layer whose weights cannot be read back (a custom
            layer's module changed since it was ported, with no factory mapped), or that
            Keras cannot rebuild, named.
    """
    require("keras")
    from ..adapters.keras.graph import graph_to_keras
    from ..inputs import example_inputs
    from ..models.torch_custom import has_custom
    from ..models.torch_readback import current_graph

    # Kernels read as views of the parameters, copied once, into Keras's variables.
    graph = _own_records(current_graph(module, borrow=True, custom_modules=custom_modules))
    if name is not None:
        graph = dataclasses.replace(graph, name=name)
    if not verify:
        return graph_to_keras(graph, hand_over=release_weights)
    inputs = example_inputs(graph, seed=seed)
    custom = has_custom(graph)
    # The port's own run and the reference runs that set the tolerance run before Keras
    # holds a copy of the weights: what they allocate and free (oneDNN's LSTM reorders the
    # weights, the float64 reference copies them) is memory Keras's variables reuse.
    expected = _expected(module, graph, inputs, custom)
    noise = None if custom else measure_noise(graph, inputs)
    # Each layer's arrays leave the graph once Keras holds them: what is left is the
    # structure the check reads.
    model = graph_to_keras(graph, hand_over=release_weights)
    _check(module, graph, model, inputs, expected, noise)
    return model


def _own_records(graph: ModelGraph) -> ModelGraph:
    """``graph`` with records of its own (sharing their arrays): the read-back graph keeps
    the port's records where a layer has nothing to read, and those stay the port's."""
    return dataclasses.replace(graph, layers=tuple(dataclasses.replace(r) for r in graph.layers))


def _expected(module: Any, graph: Any, inputs: Any, custom: bool) -> Any:
    """``module(*inputs)``: the port's own outputs (through its custom modules' runs for a
    graph with custom layers)."""
    from ..adapters.torch import run_module
    from ..models.torch_custom import run_port

    return run_port(module, graph, inputs) if custom else run_module(module, inputs)


def _check(
    module: Any, graph: Any, model: Any, inputs: Any, expected: Any, noise: Noise | None
) -> None:
    """``model`` against ``expected``, ``module(*inputs)``, on the inputs the port was
    checked on (``noise``: the reference's rounding there, measured before ``graph`` lost
    its weights; None for a graph with custom layers, which no reference runs)."""
    from ..models.port import call_keras_model
    from ..models.torch_custom import check_custom_port

    custom = noise is None
    actual = call_keras_model(model, inputs)
    parameter = next(module.parameters(), None)
    port_dtype = "float32" if parameter is None else str(parameter.dtype).split(".")[-1]
    # The Keras model computes in float32; a float16/bfloat16 port rounds more.
    dtype = least_precise("float32", port_dtype)
    label = f"torch {type(module).__name__} {graph.name!r} vs its Keras model"
    if custom:  # no reference runs a user's class: the module's own rounding
        check_custom_port(graph, module, inputs, expected, actual, label=label, dtype=dtype)
    else:
        check_port(graph, inputs, expected, actual, label=label, dtype=dtype, noise=noise)


__all__ = ["keras_model_to_keras"]
