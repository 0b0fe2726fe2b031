"""PyTorch → Keras for a module made of children: through its model graph, checked."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .._imports import require
from ..comparison import check_port, least_precise, measure_noise
from ..errors import UnsupportedFeatureError
from .verification import VERIFY_BATCH, VERIFY_STEPS

# A captured forward is read from runs at 7 and 9 steps (or longer, each input's
# ``min_steps`` less than both): its check runs at a length neither capture ran at, where
# a length read as a number (a position, a size) shows.
CAPTURED_CHECK_STEPS = 11

if TYPE_CHECKING:
    from ..models.input_shape import InputShape


def whole_module_to_keras(
    module: Any,
    *,
    verify: bool,
    seed: int,
    name: str | None,
    custom_modules: Mapping[Any, Callable[[Any], Any]] | None = None,
    input_shape: InputShape | None = None,
) -> Any:
    """A module made of children, through its model graph; checked against ``module(x)``
    on inputs of ``input_shape`` (without the batch axis) where given."""
    require("keras")
    from ..adapters.keras.graph import graph_to_keras
    from ..models.forward_arguments import with_arguments
    from ..models.graph_structure import release_weights
    from ..models.torch_custom import check_custom_port, has_custom
    from ..models.torch_graph import graph_from_torch

    graph = graph_from_torch(
        module, name=name, custom_modules=custom_modules, input_shape=input_shape
    )
    custom = has_custom(graph)
    if verify:
        from ..inputs import example_inputs

        steps = VERIFY_STEPS if graph.captured_by is None else CAPTURED_CHECK_STEPS
        xs = example_inputs(graph, batch=VERIFY_BATCH, steps=steps, seed=seed)
        # The reference runs that set the tolerance run before Keras holds the weights too.
        noise = None if custom else _runs(graph, xs, lambda: measure_noise(graph, xs))
    # The graph's records are this conversion's own: each layer's arrays (copies, or views
    # of the module's parameters) leave them once Keras holds its own, and what is left is
    # the structure the check reads.
    model = graph_to_keras(graph, hand_over=release_weights)
    model.captured_by = graph.captured_by  # torch.export, torch.fx, or None: children in order
    if verify:
        from ..adapters.torch import float_dtype

        dtype = float_dtype(module)
        called = with_arguments(module, graph)  # takes the graph's inputs, one by one
        expected, actual = _both_runs(called, model, xs, dtype)
        _check_shapes(module, xs[0], expected, actual)
        # The Keras model computes in float32; a float16/bfloat16 module rounds more.
        coarser = least_precise("float32", str(dtype).split(".")[-1])
        label = f"torch {type(module).__name__} vs its Keras model"
        if custom:  # no reference runs a user's class: the module's own rounding
            check_custom_port(graph, module, xs, expected, actual, label=label, dtype=coarser)
        else:
            check_port(graph, xs, expected, actual, label=label, dtype=coarser, noise=noise)
            _check_untied(called, model, graph, seed, dtype, coarser)
    return model


def _runs(graph: Any, xs: list[np.ndarray], run: Callable[[], Any]) -> Any:
    """``run()``, where the graph's reference may fail on ``xs``: a length the capture
    read as a number no longer fits (a slice's end against another tensor's length)."""
    try:
        return run()
    except (ValueError, IndexError) as error:
        shapes = [tuple(x.shape) for x in xs]
        raise UnsupportedFeatureError(
            f"{graph.source}'s graph does not run on inputs of shapes {shapes} ({error}): "
            "forward reads a length the capture took as a number. Give every size, "
            "input_shape=[...], to port it at those sizes"
        ) from error


def _check_untied(module: Any, model: Any, graph: Any, seed: int, dtype: Any, coarser: str) -> None:
    """Where ``forward`` takes several inputs of free length, check the port again with
    each input at a length of its own (a target shorter than its source): the capture ran
    them at one length, so a size read from the wrong input agrees only there. Skipped
    where ``forward`` itself refuses inputs of different lengths (they are tied)."""
    from ..inputs import example_inputs

    free = [
        name
        for name in graph.inputs
        if not graph.holds_lengths(name) and None in graph.layer(name).options["shape"]
    ]
    if len(free) < 2:
        return
    xs = example_inputs(graph, batch=VERIFY_BATCH, steps=VERIFY_STEPS, seed=seed, stagger=2)
    try:
        expected, actual = _both_runs(module, model, xs, dtype)
    except UnsupportedFeatureError:
        return  # forward refuses them: the inputs' lengths are tied
    shapes = [tuple(x.shape) for x in xs]
    for want, got in zip(expected, actual):
        if want.shape != got.shape:
            raise UnsupportedFeatureError(
                f"torch {type(module).__name__} returns shape {tuple(want.shape)} for inputs "
                f"of shapes {shapes}, its Keras port {got.shape}: the port reads a length "
                "from another input than forward does (the capture runs every input at one "
                "length). Give every size, input_shape=[...], to port it at those sizes"
            )
    label = f"torch {type(module).__name__} vs its Keras model, its inputs of lengths apart"
    check_port(graph, xs, expected, actual, label=label, dtype=coarser)


def _both_runs(
    module: Any, model: Any, xs: list[np.ndarray], dtype: Any
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``module``'s outputs on ``xs`` (floats in its ``dtype``, ids as they are) and its Keras
    port's (floats in float32).

    Raises:
        UnsupportedFeatureError: ``forward`` raised on them (:func:`_expected_of`).
    """
    from ..models.port import call_keras_model

    torch = require("torch")
    whole = [x.dtype.kind == "i" for x in xs]
    tensors = [
        torch.as_tensor(x) if w else torch.as_tensor(x, dtype=dtype) for x, w in zip(xs, whole)
    ]
    expected = _expected_of(module, tensors)  # before the port runs: forward may refuse xs
    given = [x if w else x.astype("float32") for x, w in zip(xs, whole)]
    return expected, list(call_keras_model(model, given))


def _check_shapes(
    module: Any, x: np.ndarray, expected: list[np.ndarray], actual: list[np.ndarray]
) -> None:
    """Refuse a port whose outputs cannot match the module's, one by one."""
    label = f"torch {type(module).__name__}(x)"
    if len(expected) != len(actual):
        raise UnsupportedFeatureError(
            f"{label} returns {len(expected)} tensors, its Keras port {len(actual)}; the "
            "port cannot match it. Convert the recurrent submodule alone (submodule=...)"
        )
    for index, (want, got) in enumerate(zip(expected, actual)):
        if want.shape != got.shape:
            which = f" (result {index})" if len(expected) > 1 else ""
            raise UnsupportedFeatureError(
                f"{label} returns shape {tuple(want.shape)}{which} for an input of shape "
                f"{x.shape}, its Keras port {got.shape}; the port cannot match it. Convert "
                "the recurrent submodule alone (submodule=...)"
            )


def _expected_of(module: Any, tensors: list[Any]) -> list[np.ndarray]:
    """``module(*tensors)`` as numpy arrays, one per tensor returned (nested tuples
    flattened in order), or a refusal saying why it cannot be compared."""
    from ..models.torch_forward import run_forward

    label = f"torch {type(module).__name__}(x)"
    try:
        output = run_forward(module, *tensors)
    except Exception as error:  # the user's forward, on an input its first child accepts
        raise UnsupportedFeatureError(
            f"{label} raised {type(error).__name__} ({error}) on an input of shape "
            f"{tuple(tensors[0].shape)}, so its Keras port cannot be checked against it"
        ) from error
    from ..adapters.torch import flatten, tensor_to_numpy

    try:
        outputs = flatten(output)
    except UnsupportedFeatureError as error:
        raise UnsupportedFeatureError(
            f"{label} returns a {type(output).__name__}; its Keras port returns tensors "
            "(or nested tuples of them)"
        ) from error
    return [tensor_to_numpy(tensor) for tensor in outputs]
