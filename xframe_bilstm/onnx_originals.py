"""The original of an ONNX export, run by its own framework, as the export checks run it.

A Keras layer by its call, a torch module by its ``forward`` (a native ``nn.LSTM`` with its
``h0``/``c0``), a ``RecurrentStack`` or a Keras file read without Keras on the float64
reference. Frameworks are imported inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._imports import require
from .canonical import RecurrentStack
from .sources import framework_of

# Inputs of a source's run: x (B, T, D), initial states in Keras order or None, lengths or None.
Run = Callable[[np.ndarray, list[np.ndarray] | None, np.ndarray | None], tuple[np.ndarray, ...]]


@dataclass(frozen=True)
class Original:
    """How to run a source in its own framework, and which inputs that run takes."""

    run: Run  # outputs in the order of output_names
    epsilon: float  # machine epsilon of the dtype the source computes in
    label: str
    takes_states: bool = True
    takes_lengths: bool = True


def original_of(source: Any, stack: RecurrentStack) -> Original:
    framework = framework_of(source)
    if isinstance(source, (str, os.PathLike)):
        if framework == "torch":  # a state_dict file: the module it holds
            from .models.from_torch import load_state_dict_module

            return _native_torch(load_state_dict_module(os.fspath(source)), os.fspath(source))
        # A Keras file's weights are read exactly, without Keras: keras_to_torch checks its
        # ports of such files against the same float64 reference.
        return _reference(stack, f"the float64 reference of {os.fspath(source)}")
    if framework == "canonical":  # a RecurrentStack, or an ONNX graph read into one
        return _reference(stack, f"the float64 reference of the {type(source).__name__}")
    if framework == "keras":
        return _keras(source)
    from .adapters import torch as torch_adapter

    if isinstance(source, torch_adapter.KerasRecurrent):
        return _keras_recurrent(source)
    return _native_torch(source, type(source).__name__)


def _reference(stack: RecurrentStack, label: str) -> Original:
    from .reference import run_reference

    def run(x: np.ndarray, states: Any, lengths: Any) -> tuple[np.ndarray, ...]:
        return run_reference(stack, x, initial_states=states, lengths=lengths)

    return Original(run, dtype_epsilon("float64"), label)


def _keras(layer: Any) -> Original:
    keras = require("keras")
    from .adapters.keras import run_keras

    def run(x: np.ndarray, states: Any, lengths: Any) -> tuple[np.ndarray, ...]:
        return run_keras(layer, x, initial_states=states, lengths=lengths)

    sequential = isinstance(layer, keras.Sequential)
    members = layer.layers if sequential else [layer]
    epsilon = max(dtype_epsilon(member.compute_dtype) for member in members)
    label = f"Keras {type(layer).__name__} {layer.name!r}"
    return Original(run, epsilon, label, takes_states=not sequential)


def _keras_recurrent(module: Any) -> Original:
    from .adapters.torch import evaluating, run_torch

    def run(x: np.ndarray, states: Any, lengths: Any) -> tuple[np.ndarray, ...]:
        with evaluating(module):
            return run_torch(module, x, initial_states=states, lengths=lengths)

    epsilon = _torch_epsilon(next(module.parameters()).dtype)
    return Original(run, epsilon, f"torch {type(module).__name__}")


def _native_torch(module: Any, name: str) -> Original:
    """A native ``nn.LSTM``/``nn.GRU``/``nn.RNN``: states as ``h0``/``c0``, rows full."""
    torch = require("torch")
    from .adapters.torch import evaluating

    def run(x: np.ndarray, states: Any, lengths: Any) -> tuple[np.ndarray, ...]:
        parameter = next(module.parameters())
        inputs = torch.as_tensor(x, dtype=parameter.dtype, device=parameter.device)
        inputs = inputs if module.batch_first else inputs.transpose(0, 1)
        hx = None if states is None else _native_states(torch, module, states, parameter)
        with evaluating(module), torch.no_grad():
            output, _ = module(inputs, hx)
        output = output if module.batch_first else output.transpose(0, 1)
        # numpy has no bfloat16; a float32 copy of a half-precision output is exact.
        output = output.float() if output.dtype in (torch.float16, torch.bfloat16) else output
        return (output.cpu().numpy(),)

    epsilon = _torch_epsilon(next(module.parameters()).dtype)
    return Original(run, epsilon, f"torch {name}", takes_lengths=False)


def _native_states(torch: Any, module: Any, states: Sequence[np.ndarray], parameter: Any) -> Any:
    """Keras-order states (layer by layer: h, c of each direction) as torch's ``h0``, ``c0``.

    torch stacks them (layers·directions, B, H), index ``2·layer + direction``.
    """
    per = 2 if isinstance(module, torch.nn.LSTM) else 1
    tensors = [torch.as_tensor(s, dtype=parameter.dtype, device=parameter.device) for s in states]
    h0 = torch.stack(tensors[0::per])
    return (h0, torch.stack(tensors[1::per])) if per == 2 else h0


def _torch_epsilon(dtype: Any) -> float:
    return float(require("torch").finfo(dtype).eps)


def dtype_epsilon(name: str) -> float:
    """Machine epsilon of a float dtype by name, bfloat16 (7 fraction bits) included."""
    return 2.0**-7 if name == "bfloat16" else float(np.finfo(name).eps)


__all__ = ["Original", "Run", "dtype_epsilon", "original_of"]
