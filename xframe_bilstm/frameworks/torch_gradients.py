"""Gradients of a torch run by autograd, read back by meaning into canonical names.

The module that runs (our port, or the user's own module), a stack's or a whole model's,
is differentiated by one function with ``torch.autograd.grad``, which leaves every
parameter's ``.grad`` as it was (and still applies the hooks registered on the tensors). Its
parameters' gradients are read back the way the module's weights are (on a copy holding the
gradients in place of the weights), so ``weight_ih``/``weight_hh`` come out transposed and
in canonical gate order, and ``bias_ih``/``bias_hh`` as the two rows of a split bias.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..gradient_arrays import (
    GradientArrays,
    graph_weight_arrays,
    input_label,
    marker_names,
    weight_arrays,
)
from ..graph import ModelGraph
from ..stack_graph import stack_of


def torch_gradients(
    torch: Any,
    module: Any,
    call: Callable[[Any, list[Any]], Any],
    graph: ModelGraph,
    inputs: list[Any],
    states: list[Any] | None,
    lengths: Any,
    cotangents: Sequence[np.ndarray],
) -> GradientArrays:
    """Differentiate ``Σ cotangent ⊙ output`` of ``call(module, arguments)``, the module of
    ``graph`` called as :func:`~xframe_bilstm.models.torch_port.module_arguments` says.

    Float inputs get a gradient (``inputs``, or ``inputs[i]`` among several), token ids
    none; the initial states given get ``initial_states[i]``. The parameters' gradients are
    read back as the module's weights are and named as the graph names them
    (:func:`_read_back`).
    """
    from ..models.torch_port import module_arguments

    arguments = module_arguments(graph, inputs, states, lengths)
    floats = [i for i, t in enumerate(inputs) if t.is_floating_point()]
    leaves = [*(inputs[i] for i in floats), *(states or ())]
    names, parameters, grads = _differentiate(torch, module, call, arguments, leaves, cotangents)
    as_numpy = [g.detach().to("cpu", torch.float64).numpy() for g in grads[: len(leaves)]]
    arrays = {input_label(i, len(inputs)): g for i, g in zip(floats, as_numpy)}
    for index, g in enumerate(as_numpy[len(floats) :]):
        arrays[f"initial_states[{index}]"] = g
    arrays.update(_read_back(torch, module, graph, grads[len(leaves) :]))
    numbered = [torch.full_like(p, i + 1.0) for i, p in enumerate(parameters)]
    markers = _read_back(torch, module, graph, numbered)
    return GradientArrays(
        {name: np.asarray(value, np.float64) for name, value in arrays.items()},
        marker_names(markers, names, "torch"),
    )


def _differentiate(
    torch: Any,
    module: Any,
    call: Callable[[Any, list[Any]], Any],
    arguments: list[Any],
    leaves: list[Any],
    cotangents: Sequence[np.ndarray],
) -> tuple[list[str], list[Any], list[Any]]:
    """Autograd of ``Σ cotangent ⊙ output`` of ``call(module, arguments)``: the module's
    parameter names and parameters, and the gradients of ``leaves`` (tensors among the
    arguments) then of the parameters, zeros where one does not reach the outputs."""
    from ..adapters.torch import flatten

    for leaf in leaves:
        leaf.requires_grad_()
    with torch.enable_grad(), _recurrent_training(torch, module):
        outputs = list(flatten(call(module, arguments)))
    if len(outputs) != len(cotangents):
        raise ValueError(
            f"the module returned {len(outputs)} arrays where {len(cotangents)} were expected"
        )
    named = list(module.named_parameters())
    names, parameters = [name for name, _ in named], [value for _, value in named]
    wanted = [*leaves, *parameters]
    weights = [
        torch.as_tensor(c, dtype=o.dtype, device=o.device) for c, o in zip(cotangents, outputs)
    ]
    found = torch.autograd.grad(outputs, wanted, grad_outputs=weights, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for g, t in zip(found, wanted)]
    return names, parameters, grads


def _read_back(
    torch: Any, module: Any, graph: ModelGraph, values: Sequence[Any]
) -> dict[str, np.ndarray]:
    """The weights of a copy of ``module`` holding ``values``, read back as the module's
    weights are and named as gradients are: a stack's module by canonical names
    (``layers[0].forward.kernel``), a whole model's by ``<layer>/<weight>`` of its graph
    (:func:`~xframe_bilstm.models.torch_readback.current_graph` for a port, the module's
    own reading otherwise)."""
    from ..models.to_torch import KerasModel

    twin = _holding(torch, module, values)
    if stack_of(graph) is not None:
        from ..adapters.torch import torch_to_canonical

        return weight_arrays(torch_to_canonical(twin))
    if isinstance(twin, KerasModel):
        from ..models.torch_readback import current_graph

        return graph_weight_arrays(current_graph(twin))
    from ..models.torch_graph import graph_from_torch

    return graph_weight_arrays(graph_from_torch(twin))


def _holding(torch: Any, module: Any, values: Sequence[Any]) -> Any:
    """A float64 copy of ``module`` whose parameters hold ``values`` (gradients, markers),
    read back as the module's weights are read."""
    twin = copy.deepcopy(module).to("cpu", torch.float64)
    with torch.no_grad():
        for parameter, value in zip(twin.parameters(), values):
            parameter.copy_(value.detach().to("cpu", torch.float64))
    return twin


@contextlib.contextmanager
def _recurrent_training(torch: Any, module: Any) -> Iterator[None]:
    """cuDNN differentiates its RNN kernels in training mode only: switch the native
    recurrent modules without dropout to it for the run (nothing else changes)."""
    switched = [
        part
        for part in module.modules()
        if isinstance(part, torch.nn.RNNBase) and not part.training and not part.dropout
    ]
    for part in switched:
        part.training = True
    try:
        yield
    finally:
        for part in switched:
            part.training = False
