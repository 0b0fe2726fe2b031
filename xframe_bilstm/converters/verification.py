"""What ``verify=True`` of both converters shares: the seeded input and the adapters."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._imports import require
from ..canonical import RecurrentStack

VERIFY_BATCH = 2
VERIFY_STEPS = 7


def verification_input(
    stack: RecurrentStack, *, seed: int = 0, batch: int | None = None
) -> np.ndarray:
    """The seeded (B, T, D) input that ``verify=True`` runs, in the weights' dtype.

    Example:
        >>> from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer
        >>> w = DirectionWeights(np.zeros((3, 2), "float16"), np.zeros((2, 2), "float16"))
        >>> stack = RecurrentStack((RecurrentLayer("simple_rnn", 3, 2, (w,),
        ...                                        recurrent_activation=None),))
        >>> x = verification_input(stack)
        >>> x.shape, x.dtype
        ((2, 7, 3), dtype('float16'))
    """
    dtype = stack.layers[0].weights[0].kernel.dtype
    rng = np.random.default_rng(seed)
    shape = (batch or VERIFY_BATCH, VERIFY_STEPS, stack.input_size)
    return rng.standard_normal(shape).astype(dtype)


def describe(obj: Any) -> str:
    """A layer or model in words, for labels: its class and name."""
    return f"{type(obj).__name__} {getattr(obj, 'name', '')!r}".strip()


def require_torch_adapter() -> Any:
    """:mod:`xframe_bilstm.adapters.torch`, once torch is known to be installed."""
    require("torch")
    from ..adapters import torch as adapter

    return adapter


def require_keras_adapter() -> Any:
    """:mod:`xframe_bilstm.adapters.keras`, once Keras is known to be installed."""
    require("keras")
    from ..adapters import keras as adapter

    return adapter
