"""Turn anything a user hands us into the canonical form, without importing a framework to look.

A Keras object can only exist if Keras is already imported, and a torch module only if torch
is; so the type of ``source`` is checked against frameworks found in ``sys.modules``, and an
adapter is imported only once its framework is known to be in use.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .canonical import RecurrentStack
from .errors import UnsupportedFeatureError
from .models.from_torch import TORCH_FILE_SUFFIXES


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
    if isinstance(source, (str, os.PathLike)):
        # State dicts load as torch modules; Keras files are read exactly, without Keras.
        return "torch" if _is_state_dict_path(source) else "canonical"
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(source, keras.layers.Layer):
        return "keras"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(source, torch.nn.Module):
        return "torch"
    raise UnsupportedFeatureError(
        f"{type(source).__name__} is not a recurrent layer this package can read; pass a "
        "Keras 3 layer or Sequential, a torch nn.LSTM/nn.GRU/nn.RNN (or a module made by "
        "keras_to_torch), a RecurrentStack, or the path of a .keras/.h5 model or of a "
        "state_dict file (.pt, .pth, .bin, .safetensors)"
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
    if isinstance(source, (str, os.PathLike)):
        return _file_to_canonical(source)
    framework = framework_of(source)
    if framework == "canonical":
        return source
    if framework == "keras":
        from .adapters.keras import keras_to_canonical

        return keras_to_canonical(source)
    from .adapters.torch import torch_to_canonical

    return torch_to_canonical(source)


def _is_state_dict_path(path: str | os.PathLike) -> bool:
    return os.fspath(path).endswith(TORCH_FILE_SUFFIXES)


def is_whole_model(source: Any) -> bool:
    """Whether ``source`` is a Keras model (or model file) that is not a recurrent stack.

    Example:
        >>> is_whole_model(object())
        False
    """
    if isinstance(source, (str, os.PathLike)):
        if _is_state_dict_path(source):
            return False
        from .keras_files import read_spec

        spec = read_spec(os.fspath(source))
        stack_kinds = ("input", "identity", "recurrent")
        return len(spec.outputs) != 1 or any(layer.kind not in stack_kinds for layer in spec.layers)
    from .models.live import is_whole_keras_model

    return is_whole_keras_model(source)


def _file_to_canonical(path: str | os.PathLike) -> RecurrentStack:
    if _is_state_dict_path(path):
        from .adapters.torch import torch_to_canonical
        from .models.from_torch import load_state_dict_module

        return torch_to_canonical(load_state_dict_module(os.fspath(path)))
    from .keras_files import read_model

    stack = read_model(os.fspath(path)).as_stack()
    if stack is None:
        raise UnsupportedFeatureError(
            f"{os.fspath(path)}: a whole model (not only recurrent layers), which has no "
            "canonical stack; compare() runs it as a whole model and keras_to_torch() ports it"
        )
    return stack
