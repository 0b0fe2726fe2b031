"""PyTorch → Keras for a whole-model port (:class:`~xframe_bilstm.models.to_torch.KerasModel`).

Such a module came from a Keras model (:func:`~xframe_bilstm.keras_to_torch`) and keeps
the graph it was built from; it is read back through that graph with the weights its
parameters hold now (:func:`~xframe_bilstm.models.torch_readback.current_graph`), rebuilt
in Keras, and checked against the module's own ``forward``, ``module(*inputs)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .._imports import require
from ..comparison import check_port, least_precise


def keras_model_to_keras(module: Any, *, verify: bool, seed: int, name: str | None) -> Any:
    """The functional ``keras.Model`` of a ``KerasModel`` port, checked against it.

    Args:
        module: the port.
        verify: run both on seeded inputs (with padded rows, as the port was checked on)
            and raise :class:`~xframe_bilstm.errors.ToleranceExceededError` if they disagree.
        seed: seed of those inputs.
        name: the Keras model's name (the module's own graph name when None).

    Raises:
        UnsupportedFeatureError: a layer whose weights cannot be read back, or that Keras
            cannot rebuild, named.
    """
    require("keras")
    from ..adapters.keras.graph import graph_to_keras
    from ..models.torch_readback import current_graph

    graph = current_graph(module)
    if name is not None:
        graph = dataclasses.replace(graph, name=name)
    model = graph_to_keras(graph)
    if verify:
        _check(module, graph, model, seed)
    return model


def _check(module: Any, graph: Any, model: Any, seed: int) -> None:
    """``model`` against ``module(*inputs)`` on the inputs the port was checked on."""
    from ..adapters.torch import run_module
    from ..inputs import example_inputs
    from ..models.port import call_keras_model
    from ..models.torch_custom import check_custom_port, has_custom, run_port

    inputs = example_inputs(graph, seed=seed)
    custom = has_custom(graph)
    expected = run_port(module, graph, inputs) if custom else run_module(module, inputs)
    actual = call_keras_model(model, inputs)
    parameter = next(module.parameters(), None)
    port_dtype = "float32" if parameter is None else str(parameter.dtype).split(".")[-1]
    # The Keras model computes in float32; a float16/bfloat16 port rounds more.
    dtype = least_precise("float32", port_dtype)
    label = f"torch {type(module).__name__} {graph.name!r} vs its Keras model"
    if custom:  # no reference runs a user's class: the module's own rounding
        check_custom_port(graph, module, inputs, expected, actual, label=label, dtype=dtype)
    else:
        check_port(graph, inputs, expected, actual, label=label, dtype=dtype)


__all__ = ["keras_model_to_keras"]
