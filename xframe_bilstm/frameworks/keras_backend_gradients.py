"""Gradients of the Keras layer on the JAX or PyTorch backend, by that backend's autodiff.

Runs in the child process of a ``keras-jax`` or ``keras-torch`` column
(:mod:`~xframe_bilstm.frameworks.keras_backends`). The layer rebuilt from the reading (or a
model loaded from the user's ``.keras`` file) is called through ``stateless_call``, so that
its trainable variables are arguments of one function of (input, initial states, weights);
JAX differentiates that function with ``jax.vjp``, PyTorch with ``torch.autograd.grad``
through the Keras ops. The gradients are named as the TensorFlow column names them
(:func:`~xframe_bilstm.frameworks.keras_gradients.named_gradients`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..errors import UnsupportedFeatureError
from ..gradient_arrays import GradientArrays
from ..masks import mask_from_lengths
from ..reference import Reading
from ..stack_graph import as_graph, stack_of
from .base import GRAPH_GRADIENTS, RunSpec
from .keras_gradients import named_gradients

Differentiated = tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]


def backend_gradients(
    layer: Any,
    x: np.ndarray,
    dtype: str,
    cotangents: Sequence[np.ndarray],
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
) -> GradientArrays:
    """Differentiate ``Σ cotangent ⊙ output`` of ``layer`` (inference mode) on this
    process's Keras backend, with respect to ``x``, the states given and every weight."""
    keras = require("keras")
    if initial_states is not None and isinstance(layer, keras.Sequential):
        raise UnsupportedFeatureError(
            "initial_states: a Keras Sequential takes no initial_state, so its state "
            "gradients cannot be taken; compare the layers one at a time"
        )
    options: dict[str, Any] = {"training": False}
    if lengths is not None:
        options["mask"] = keras.ops.convert_to_tensor(mask_from_lengths(lengths, *x.shape[:2]))
    variables = list(layer.trainable_variables)
    fixed = [v.value for v in layer.non_trainable_variables]

    def outputs(inputs: Any, states: list[Any], weights: list[Any]) -> list[Any]:
        given = {**options, "initial_state": states} if states else options
        result, _ = layer.stateless_call(weights, fixed, inputs, **given)
        return list(keras.tree.flatten(result))

    arrays = (
        np.asarray(x, dtype),
        [np.asarray(s, dtype) for s in initial_states or ()],
        [np.asarray(keras.ops.convert_to_numpy(v), v.dtype) for v in variables],
    )
    differentiate = _DIFFERENTIATE[keras.backend.backend()]
    inputs, states, weights = differentiate(outputs, arrays, [np.asarray(c) for c in cotangents])
    return named_gradients(
        keras, layer, variables, inputs, states if initial_states is not None else None, weights
    )


def rebuilt_layer(reading: Reading, spec: RunSpec) -> Any:
    """The Keras layer (or ``Sequential``) of the stack ``reading``'s graph is, in
    ``spec.dtype``; a stateful stack as from zero states, as its forward run computes it.
    A whole model's gradients are not taken on these backends (``gradient_refusal``)."""
    from ..adapters.keras import canonical_to_keras

    stack = stack_of(as_graph(reading))
    if stack is None:
        raise UnsupportedFeatureError(GRAPH_GRADIENTS)
    stack = dataclasses.replace(stack, stateful=False) if stack.stateful else stack
    return canonical_to_keras(stack, dtype=spec.dtype)


def _check_outputs(got: int, cotangents: Sequence[np.ndarray]) -> None:
    if got != len(cotangents):
        raise ValueError(f"the layer returned {got} arrays where {len(cotangents)} were expected")


def _jax_vjp(
    outputs: Callable[..., list[Any]],
    arrays: tuple[np.ndarray, list[np.ndarray], list[np.ndarray]],
    cotangents: list[np.ndarray],
) -> Differentiated:
    """``jax.vjp`` of the layer's function at ``arrays``."""
    jax = require("jax")
    jnp = jax.numpy
    x, states, weights = arrays
    primal = (jnp.asarray(x), [jnp.asarray(s) for s in states], [jnp.asarray(w) for w in weights])
    results, pullback = jax.vjp(outputs, *primal)
    _check_outputs(len(results), cotangents)
    seeds = [jnp.asarray(c, dtype=r.dtype) for c, r in zip(cotangents, results)]
    grad_x, grad_states, grad_weights = pullback(seeds)
    return (
        np.asarray(grad_x),
        [np.asarray(g) for g in grad_states],
        [np.asarray(g) for g in grad_weights],
    )


def _torch_autograd(
    outputs: Callable[..., list[Any]],
    arrays: tuple[np.ndarray, list[np.ndarray], list[np.ndarray]],
    cotangents: list[np.ndarray],
) -> Differentiated:
    """``torch.autograd.grad`` through the Keras ops of the layer's function."""
    torch = require("torch")
    from keras.src.backend.torch.core import get_device

    device = get_device()
    x, states, weights = arrays

    def leaf(array: np.ndarray) -> Any:
        return torch.tensor(array, device=device).requires_grad_(True)

    leaves = (leaf(x), [leaf(s) for s in states], [leaf(w) for w in weights])
    results = outputs(*leaves)
    _check_outputs(len(results), cotangents)
    seeds = [
        torch.as_tensor(c, dtype=r.dtype, device=r.device) for c, r in zip(cotangents, results)
    ]
    flat = [leaves[0], *leaves[1], *leaves[2]]
    grads = torch.autograd.grad(results, flat, grad_outputs=seeds, allow_unused=True)
    numpy = [
        np.zeros(tuple(t.shape)) if g is None else g.detach().cpu().numpy()
        for g, t in zip(grads, flat)
    ]
    count = 1 + len(states)
    return numpy[0], numpy[1:count], numpy[count:]


_DIFFERENTIATE: dict[str, Callable[..., Differentiated]] = {
    "jax": _jax_vjp,
    "torch": _torch_autograd,
}

__all__ = ["backend_gradients", "rebuilt_layer"]
