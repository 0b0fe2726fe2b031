"""PyTorch → Keras for a module made of children: through its model graph, checked."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._imports import require
from ..comparison import check_port, least_precise
from ..errors import UnsupportedFeatureError
from .verification import VERIFY_BATCH, VERIFY_STEPS


def whole_module_to_keras(
    module: Any,
    *,
    verify: bool,
    seed: int,
    name: str | None,
    custom_modules: Mapping[Any, Callable[[Any], Any]] | None = None,
) -> Any:
    """A module made of children, through its model graph; checked against ``module(x)``."""
    require("keras")
    from ..adapters.keras.graph import graph_to_keras
    from ..models.torch_graph import graph_from_torch

    graph = graph_from_torch(module, name=name, custom_modules=custom_modules)
    model = graph_to_keras(graph)
    if verify:
        torch = require("torch")
        from ..inputs import example_inputs
        from ..models.port import call_keras_model

        x = example_inputs(graph, batch=VERIFY_BATCH, steps=VERIFY_STEPS, seed=seed)[0]
        dtype = next(module.parameters()).dtype
        tensor = torch.as_tensor(x) if x.dtype.kind == "i" else torch.as_tensor(x, dtype=dtype)
        expected = _expected_of(torch, module, tensor)
        (actual,) = call_keras_model(model, [x if x.dtype.kind == "i" else x.astype("float32")])
        if expected.shape != actual.shape:
            raise UnsupportedFeatureError(
                f"torch {type(module).__name__}(x) returns shape {tuple(expected.shape)} for "
                f"an input of shape {x.shape}, its Keras port {actual.shape}; the port "
                "cannot match it. Convert the recurrent submodule alone (submodule=...)"
            )
        # The Keras model computes in float32; a float16/bfloat16 module rounds more.
        coarser = least_precise("float32", str(dtype).split(".")[-1])
        label = f"torch {type(module).__name__} vs its Keras model"
        from ..models.torch_custom import check_custom_port, has_custom

        if has_custom(graph):  # no reference runs a user's class: the module's own rounding
            check_custom_port(graph, module, [x], [expected], [actual], label=label, dtype=coarser)
        else:
            check_port(graph, [x], [expected], [actual], label=label, dtype=coarser)
    return model


def _expected_of(torch: Any, module: Any, tensor: Any) -> np.ndarray:
    """``module(tensor)`` as numpy, or a refusal saying why it cannot be compared."""
    from ..models.torch_forward import run_forward

    label = f"torch {type(module).__name__}(x)"
    try:
        output = run_forward(module, tensor)
    except Exception as error:  # the user's forward, on an input its first child accepts
        raise UnsupportedFeatureError(
            f"{label} raised {type(error).__name__} ({error}) on an input of shape "
            f"{tuple(tensor.shape)}, so its Keras port cannot be checked against it"
        ) from error
    if not isinstance(output, torch.Tensor):
        raise UnsupportedFeatureError(
            f"{label} returns a {type(output).__name__}; its Keras port returns one tensor"
        )
    from ..adapters.torch import tensor_to_numpy

    return tensor_to_numpy(output)
