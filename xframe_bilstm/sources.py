"""Turn anything a user hands us into the canonical form, without importing a framework to look.

A Keras object can only exist if Keras is already imported, and a torch module only if torch
is; so the type of ``source`` is checked against frameworks found in ``sys.modules``, and an
adapter is imported only once its framework is known to be in use.
"""

from __future__ import annotations

import sys
from typing import Any

from .canonical import RecurrentStack
from .errors import UnsupportedFeatureError


def framework_of(source: Any) -> str:
    """``"canonical"``, ``"keras"`` or ``"torch"``: which framework ``source`` belongs to.

    Example:
        >>> framework_of(object())
        Traceback (most recent call last):
        ...
        xframe_bilstm.errors.UnsupportedFeatureError: object is not a recurrent layer ...
    """
    if isinstance(source, RecurrentStack):
        return "canonical"
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(source, keras.layers.Layer):
        return "keras"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(source, torch.nn.Module):
        return "torch"
    raise UnsupportedFeatureError(
        f"{type(source).__name__} is not a recurrent layer this package can read; pass a "
        "Keras 3 layer or Sequential, a torch nn.LSTM/nn.GRU/nn.RNN (or a module made by "
        "keras_to_torch), or a RecurrentStack"
    )


def to_canonical(source: Any) -> RecurrentStack:
    """The canonical form of a Keras layer or model, a torch module, or a canonical stack.

    Example:
        >>> import numpy as np
        >>> from xframe_bilstm import DirectionWeights, RecurrentLayer
        >>> w = DirectionWeights(np.zeros((1, 1)), np.zeros((1, 1)))
        >>> stack = RecurrentStack((RecurrentLayer("simple_rnn", 1, 1, (w,),
        ...                                        recurrent_activation=None),))
        >>> to_canonical(stack) is stack
        True
    """
    framework = framework_of(source)
    if framework == "canonical":
        return source
    if framework == "keras":
        from .adapters.keras import keras_to_canonical

        return keras_to_canonical(source)
    from .adapters.torch import torch_to_canonical

    return torch_to_canonical(source)
