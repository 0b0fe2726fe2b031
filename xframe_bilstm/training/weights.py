"""The trained weights under canonical names, with each framework's native name beside.

A canonical name is ``layer{i}/{direction}/{kernel|recurrent_kernel|bias}`` (direction
``forward`` or ``backward``). Arrays are in canonical orientation and gate order
(:mod:`xframe_bilstm.canonical`). A bias means what Keras's bias means: for LSTM and
SimpleRNN the one vector the equations see (PyTorch's ``bias_ih + bias_hh``), for GRU the
Keras bias as it is (``(2, 3H)`` with ``reset_after=True``, PyTorch's two biases as rows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..canonical import DirectionWeights, RecurrentLayer, RecurrentStack

PARTS = ("kernel", "recurrent_kernel", "bias")
TORCH_PARTS = {"kernel": "weight_ih", "recurrent_kernel": "weight_hh", "bias": "bias_ih"}
SUFFIXES = ("", "_reverse")


def _directions(layer: RecurrentLayer) -> tuple[str, ...]:
    return ("forward", "backward") if layer.direction == "bidirectional" else (layer.direction,)


def weight_names(stack: RecurrentStack) -> list[str]:
    """Every trained weight's canonical name, layer by layer."""
    names: list[str] = []
    for index, layer in enumerate(stack.layers):
        for direction, weights in zip(_directions(layer), layer.weights):
            parts = PARTS if weights.bias is not None else PARTS[:2]
            names.extend(f"layer{index}/{direction}/{part}" for part in parts)
    return names


def folded_biases(stack: RecurrentStack) -> set[str]:
    """The biases Keras keeps as one vector and PyTorch trains as ``bias_ih`` + ``bias_hh``."""
    return {
        name
        for name in weight_names(stack)
        if name.endswith("/bias") and stack.layers[int(name.split("/")[0][5:])].cell != "gru"
    }


def flat_weights(stack: RecurrentStack, dtype: Any = np.float64) -> dict[str, np.ndarray]:
    """``{canonical name: array}`` of a stack's weights (a folded bias summed)."""
    flat = {}
    for index, layer in enumerate(stack.layers):
        for direction, weights in zip(_directions(layer), layer.weights):
            prefix = f"layer{index}/{direction}/"
            flat[prefix + "kernel"] = np.array(weights.kernel, dtype=dtype)
            flat[prefix + "recurrent_kernel"] = np.array(weights.recurrent_kernel, dtype=dtype)
            if weights.bias is not None:
                bias = weights.bias if layer.cell == "gru" else weights.summed_bias
                flat[prefix + "bias"] = np.array(bias, dtype=dtype)
    return flat


def flat_gradients(stack: RecurrentStack, dtype: Any = np.float64) -> dict[str, np.ndarray]:
    """``{canonical name: gradient}`` from a stack of gradients read off torch's parameters.

    A folded bias's gradient is ``bias_ih``'s: the loss sees only the sum, so the gradient
    with respect to the sum is the gradient with respect to either term.
    """
    flat = flat_weights(stack, dtype)
    for index, layer in enumerate(stack.layers):
        if layer.cell == "gru":
            continue
        for direction, weights in zip(_directions(layer), layer.weights):
            if weights.bias is not None:
                flat[f"layer{index}/{direction}/bias"] = np.array(weights.input_bias, dtype=dtype)
    return flat


def with_weights(stack: RecurrentStack, flat: Mapping[str, np.ndarray]) -> RecurrentStack:
    """``stack`` holding the weights of ``flat`` (in their dtype)."""
    layers = []
    for index, layer in enumerate(stack.layers):
        weights = tuple(
            DirectionWeights(
                flat[f"layer{index}/{direction}/kernel"],
                flat[f"layer{index}/{direction}/recurrent_kernel"],
                flat.get(f"layer{index}/{direction}/bias"),
            )
            for direction in _directions(layer)
        )
        layers.append(dataclasses.replace(layer, weights=weights))
    return dataclasses.replace(stack, layers=tuple(layers))


def torch_names(module: Any, stack: RecurrentStack) -> dict[str, str]:
    """PyTorch's parameter name(s) for each canonical name of a ``KerasRecurrent`` port."""
    folded = folded_biases(stack)
    valid = set(weight_names(stack))
    names: dict[str, str] = {}
    index = 0
    for group_index, group in enumerate(module.groups):
        for depth, layer in enumerate(group):
            for direction, suffix in zip(_directions(layer), SUFFIXES):
                prefix = f"layer{index}/{direction}/"
                for part in PARTS:
                    name = f"rnns.{group_index}.{TORCH_PARTS[part]}_l{depth}{suffix}"
                    if prefix + part not in valid:
                        continue
                    if part == "bias" and (prefix + part in folded or layer.reset_after):
                        joiner = " + " if prefix + part in folded else ", "
                        name += joiner + name.replace("bias_ih", "bias_hh")
                    names[prefix + part] = name
            index += 1
    return names


def torch_gradients(module: Any) -> dict[str, np.ndarray]:
    """``{canonical name: gradient}`` after ``backward()`` on a ``KerasRecurrent`` port."""
    import torch

    layers = []
    for rnn, group in zip(module.rnns, module.groups):
        grads = {
            name: (p.grad if p.grad is not None else torch.zeros_like(p)).detach()
            for name, p in rnn.named_parameters()
        }
        for depth, layer in enumerate(group):
            layers.append(_read_layer(SimpleNamespace(**grads), depth, layer))
    stack = RecurrentStack(tuple(layers))
    return flat_gradients(stack, np.float64)


def _read_layer(source: Any, depth: int, template: RecurrentLayer) -> RecurrentLayer:
    from ..adapters.torch.weights import read_layer

    return read_layer(source, depth, template)


def keras_names(obj: Any, stack: RecurrentStack) -> dict[str, str]:
    """Keras's variable path for each canonical name of a recurrent layer or ``Sequential``."""
    import keras

    members = obj.layers if isinstance(obj, keras.Sequential) else [obj]
    recurrent = [
        m for m in members if isinstance(m, (keras.layers.RNN, keras.layers.Bidirectional))
    ]
    names: dict[str, str] = {}
    for index, (layer, keras_layer) in enumerate(zip(stack.layers, recurrent)):
        halves = (
            (keras_layer.forward_layer, keras_layer.backward_layer)
            if isinstance(keras_layer, keras.layers.Bidirectional)
            else (keras_layer,)
        )
        for direction, half in zip(_directions(layer), halves):
            cell = half.cell
            for part in PARTS:
                variable = getattr(cell, part, None)
                if variable is not None:
                    names[f"layer{index}/{direction}/{part}"] = variable.path
    return names
