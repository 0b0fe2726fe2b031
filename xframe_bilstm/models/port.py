"""Port a whole Keras model (a file or a live model) to PyTorch, checked as it is ported.

Rules of this module:

- A model that is only recurrent layers in a chain becomes the same
  :class:`~xframe_bilstm.adapters.torch.KerasRecurrent` that
  :func:`~xframe_bilstm.keras_to_torch` makes of the layers; anything else becomes a
  :class:`~xframe_bilstm.models.to_torch.KerasModel`.
- With ``verify``, the port runs on seeded inputs that include right- and left-padded rows
  (:func:`~xframe_bilstm.models.reference.example_inputs`), and must match the expected
  outputs within the tolerance that float32 rounding explains for this model on these
  inputs (:func:`~xframe_bilstm.models.reference.model_noise`). The expected outputs are
  the float64 reference's, or those of the live Keras model when there is one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..comparison import compare_outputs, dtype_epsilon, least_precise
from ..errors import ToleranceExceededError
from .graph import ModelGraph
from .reference import example_inputs, model_noise

Runner = Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]]


def run_port(module: Any, inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Run a ported module on numpy inputs (ids as int64, features in its dtype)."""
    torch = require("torch")
    dtype = next(module.parameters()).dtype
    tensors = [
        torch.as_tensor(np.asarray(x, np.int64 if np.issubdtype(x.dtype, np.integer) else None))
        for x in inputs
    ]
    tensors = [t if not t.is_floating_point() else t.to(dtype) for t in tensors]
    with torch.no_grad():
        result = module(*tensors)
    outputs = result if isinstance(result, tuple) else (result,)
    from ..adapters.torch import tensor_to_numpy  # bfloat16 too

    return tuple(tensor_to_numpy(output) for output in outputs)


def port_graph(
    graph: ModelGraph,
    *,
    verify: bool = True,
    seed: int = 0,
    expected: Runner | None = None,
    label: str = "",
    compute_dtype: str = "float32",
) -> Any:
    """Build the torch module of ``graph`` and, with ``verify``, check it.

    Args:
        graph: the model description.
        verify: run the port and compare it with ``expected`` (default: the float64
            reference) on seeded padded inputs.
        seed: seed of those inputs.
        expected: runs the original model on numpy inputs, e.g. a live Keras model.
        label: names the pair in the error message.
        compute_dtype: the dtype ``expected`` computes in (e.g. ``"float16"`` for a
            mixed-precision Keras model); the rounding of the less precise of it and the
            port's own dtype is allowed.

    Raises:
        ToleranceExceededError: the port and the original disagree.
    """
    require("torch")
    stack = graph.as_stack()
    module: Any
    if stack is not None:
        from ..adapters.torch import canonical_to_torch

        module = canonical_to_torch(stack)
    else:
        from .to_torch import build_torch

        module = build_torch(graph)
    module.eval()
    if verify:
        inputs = example_inputs(graph, seed=seed)
        noise, exact = model_noise(graph, inputs)
        reference = exact if expected is None else tuple(expected(inputs))
        actual = run_port(module, inputs)
        port_dtype = str(next(module.parameters()).dtype).split(".")[-1]
        names = [f"output {name!r}" for name in graph.outputs]
        result = compare_outputs(
            names,
            reference,
            actual,
            atol=noise.tolerance(dtype_epsilon(least_precise(port_dtype, compute_dtype))),
            label=label or f"{graph.source} vs its torch port",
        )
        if not result:
            raise ToleranceExceededError(result.message())
    return module


__all__ = ["port_graph", "run_port"]
