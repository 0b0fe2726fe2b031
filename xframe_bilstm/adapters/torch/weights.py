"""Canonical layers into native ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (or explicit) modules, and back.

Whatever the native modules compute exactly runs on them, with their native parameter
names and gate orders (LSTM ``ifgo``, GRU ``rzn``); everything else runs on
:class:`~xframe_bilstm.adapters.torch.explicit.ExplicitRNN`, which has the same names.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch
from torch import nn

from ...canonical import DirectionWeights, RecurrentLayer
from ...copies import copy_into, read_only_view
from ...gates import CANONICAL_ORDER, TORCH_ORDER, reorder_gates
from .explicit import SUFFIXES, ExplicitRNN
from .tensors import numpy_to_tensor, tensor_to_numpy

NATIVE = {"lstm": nn.LSTM, "gru": nn.GRU, "simple_rnn": nn.RNN}

# Parameters smaller than this many elements are copied by numpy, on the calling thread:
# torch's copy_ starts its thread pool on a process's first large copy (milliseconds, more
# on a loaded machine), more than a small model's whole conversion takes; larger
# parameters gain from the pool's threads.
NUMPY_COPY_ELEMENTS = 1 << 20


def is_native(layer: RecurrentLayer) -> bool:
    """Whether ``nn.LSTM``/``nn.GRU``/``nn.RNN`` compute this layer's cell exactly."""
    if layer.cell == "simple_rnn":
        return layer.activation in ("tanh", "relu")
    if layer.cell == "gru" and not layer.reset_after:
        return False
    return layer.activation == "tanh" and layer.recurrent_activation == "sigmoid"


def make_module(
    group: list[RecurrentLayer], dtype: torch.dtype, *, explicit: bool = False
) -> nn.Module:
    """An empty native module for ``group`` (layers it fuses) or an :class:`ExplicitRNN`
    (for one layer whose cell no native module computes, or where ``explicit``)."""
    first = group[0]
    bidirectional = first.direction == "bidirectional"
    if explicit or not is_native(first):
        return ExplicitRNN(
            first.cell,
            first.input_size,
            first.units,
            bidirectional=bidirectional,
            bias=first.use_bias,
            activation=first.activation,
            recurrent_activation=first.recurrent_activation,
            reset_after=first.reset_after,
            dtype=dtype,
        )
    options = {"nonlinearity": first.activation} if first.cell == "simple_rnn" else {}
    # Made on the meta device and given empty memory: the weights are overwritten right
    # away, so the random initialization would only cost time. ``torch.empty`` of each
    # shape rather than ``to_empty``, whose ``empty_like`` of a meta tensor imports torch's
    # symbolic-shape machinery (sympy; half a second in a fresh process).
    module = NATIVE[first.cell](
        first.input_size,
        first.units,
        num_layers=len(group),
        bias=first.use_bias,
        batch_first=True,
        bidirectional=bidirectional,
        device="meta",
        dtype=dtype,
        **options,
    )
    return module._apply(lambda t: torch.empty(t.shape, dtype=t.dtype, device="cpu"))


def _to_torch_order(array: np.ndarray, cell: str) -> np.ndarray:
    return reorder_gates(array, CANONICAL_ORDER[cell], TORCH_ORDER[cell], axis=-1)


def _to_canonical_order(array: np.ndarray, cell: str) -> np.ndarray:
    """Gate blocks of a torch-oriented parameter (blocks along its first axis) in canonical
    order: contiguous rows, moved before the transpose to Keras's orientation."""
    return reorder_gates(array, TORCH_ORDER[cell], CANONICAL_ORDER[cell], axis=0)


def load_layer(module: nn.Module, index: int, layer: RecurrentLayer) -> None:
    """Copy one canonical layer into layer ``index`` of a native or explicit module.

    Each weight is copied once, straight into its parameter: a kernel through torch's
    blocked transposed copy, then its gate blocks moved in place where the orders differ.
    """
    for suffix, weights in zip(SUFFIXES, layer.weights):
        arrays: dict[str, np.ndarray] = {
            "weight_ih": weights.kernel,
            "weight_hh": weights.recurrent_kernel,
        }
        if weights.input_bias is not None:
            arrays["bias_ih"] = weights.input_bias
            if hasattr(module, f"bias_hh_l{index}{suffix}"):
                recurrent = weights.recurrent_bias
                arrays["bias_hh"] = (
                    np.zeros_like(weights.input_bias) if recurrent is None else recurrent
                )
        for name, array in arrays.items():
            parameter = getattr(module, f"{name}_l{index}{suffix}")
            # Canonical (D, G·H) x-on-the-left becomes torch's (G·H, D) W-on-the-left.
            source = array.T if array.ndim == 2 else array
            if not _copy_small(parameter, source, layer.cell):
                parameter.copy_(_source_tensor(source))
                _reorder_rows(parameter, layer.cell)


def _copy_small(parameter: torch.Tensor, source: np.ndarray, cell: str) -> bool:
    """Copy a small ``source`` of the parameter's dtype into it by numpy, gate blocks in
    torch order; whether it did (else the caller copies with torch)."""
    if parameter.numel() >= NUMPY_COPY_ELEMENTS or parameter.dtype == torch.bfloat16:
        return False
    target = parameter.detach().numpy()
    if source.dtype != target.dtype or source.shape != target.shape:
        return False
    gates = len(CANONICAL_ORDER[cell])
    rows = target.shape[0] // gates
    for block, origin in enumerate(_to_torch_order(np.arange(gates), cell).tolist()):
        copy_into(
            target[block * rows : (block + 1) * rows], source[origin * rows : (origin + 1) * rows]
        )
    return True


def _source_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor reading ``array``'s memory (bfloat16 through a copy), for ``copy_``."""
    if array.dtype.name == "bfloat16":
        return numpy_to_tensor(array)
    with warnings.catch_warnings():
        # copy_ only reads the (read-only) canonical array: the warning does not apply.
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.from_numpy(array)


def _reorder_rows(parameter: torch.Tensor, cell: str) -> None:
    """Move the gate blocks along a parameter's first axis from canonical to torch order."""
    gates = len(CANONICAL_ORDER[cell])
    order = _to_torch_order(np.arange(gates), cell).tolist()
    if order != list(range(gates)):
        # One block-wise copy through a temporary; the rows of a block stay contiguous.
        parameter.copy_(parameter.view(gates, -1)[order].view_as(parameter))


def read_layer(
    module: nn.Module, index: int, template: RecurrentLayer, *, borrow: bool = False
) -> RecurrentLayer:
    """Layer ``index`` of a native or explicit module, as a canonical layer like ``template``.

    The canonical layer owns a copy of the weights. Arrays whose gate blocks move (a GRU's)
    are read into new memory, which it keeps; the others are read as writable views of the
    parameters, which :class:`~xframe_bilstm.canonical.DirectionWeights` copies; the two
    biases are stacked into one new array. With ``borrow`` the views are read-only and
    kept as they are: an LSTM's or RNN's kernels are then the parameters' own memory, for
    a conversion that copies them into their destination at once and drops the layer.
    """

    def read(name: str, suffix: str) -> np.ndarray:
        array = tensor_to_numpy(getattr(module, f"{name}_l{index}{suffix}"))
        # Gate blocks are rows in torch's orientation: moved as contiguous rows, then
        # transposed (a view) to the canonical (D, G·H).
        ordered = _to_canonical_order(array, template.cell)
        if borrow or ordered is not array:  # a view lent for the conversion, or our own copy
            ordered = read_only_view(ordered)
        return ordered.T if ordered.ndim == 2 else ordered

    def read_bias(name: str, suffix: str) -> np.ndarray | None:
        return read(name, suffix) if hasattr(module, f"{name}_l{index}{suffix}") else None

    weights = []
    for suffix in SUFFIXES[: len(template.weights)]:
        bias_ih, bias_hh = read_bias("bias_ih", suffix), read_bias("bias_hh", suffix)
        bias = None
        if bias_ih is not None:
            bias = bias_ih if bias_hh is None else np.stack([bias_ih, bias_hh])
        weights.append(DirectionWeights(read("weight_ih", suffix), read("weight_hh", suffix), bias))
    return dataclasses.replace(template, weights=tuple(weights))
