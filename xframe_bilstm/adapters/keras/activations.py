"""Activations between Keras functions and canonical names, and Keras 2's hard sigmoid.

Activations are recognised by identity with Keras's own functions (``keras.activations``
and ``keras.ops``), never by a function's name: a user function called ``tanh`` is not tanh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..._imports import require
from ...activations import KERAS_NAMED
from ...errors import UnsupportedFeatureError

# Canonical activation name -> the name Keras knows it by (hard_sigmoid_keras2 is our function).
_KERAS_NAME = {**{name: name for name in KERAS_NAMED}, "hard_sigmoid_keras3": "hard_sigmoid"}

_REGISTERED_PACKAGE = "xframe_bilstm"
_registered = False


def hard_sigmoid_keras2(x: Any) -> Any:
    """Keras 2's hard sigmoid, ``clip(0.2·x + 0.5, 0, 1)``, as a Keras 3 activation.

    Keras 3's ``"hard_sigmoid"`` is ``clip(x/6 + 0.5, 0, 1)``; layers trained under Keras 2
    need this one to compute what they computed there.

    Example:
        >>> round(float(hard_sigmoid_keras2(np.float32(2.0))), 6)
        0.9
    """
    keras = require("keras")
    return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)


def gelu_tanh(x: Any) -> Any:
    """GELU's tanh approximation (``keras.activations.gelu(x, approximate=True)``).

    Keras has no name for it; a layer using it needs this registered function to be saved.

    Example:
        >>> round(float(gelu_tanh(np.float32(1.0))), 4)
        0.8412
    """
    keras = require("keras")
    return keras.activations.gelu(x, approximate=True)


def register_keras_activations() -> None:
    """Register :func:`hard_sigmoid_keras2` with Keras so saved models can be loaded again,
    and the package's own layers (:mod:`.tensor_ops`, :mod:`.packed`) a saved model may hold.

    Idempotent; called by the converters, so users only need it before ``load_model``.

    Example:
        >>> register_keras_activations()
        >>> keras.saving.get_registered_object("xframe_bilstm>hard_sigmoid_keras2").__name__
        'hard_sigmoid_keras2'
    """
    global _registered
    if _registered:
        return
    keras = require("keras")
    for function in (hard_sigmoid_keras2, gelu_tanh):
        keras.saving.register_keras_serializable(package=_REGISTERED_PACKAGE)(function)
    from .packed import packed_classes
    from .tensor_ops import tensor_op_classes

    tensor_op_classes()  # registered as they are defined
    packed_classes()
    _registered = True


def _known_activations(keras: Any) -> list[tuple[Callable[..., Any], str]]:
    """(Keras function, canonical name) for every function object Keras may store."""
    register_keras_activations()
    known: list[tuple[Callable[..., Any], str]] = [
        (hard_sigmoid_keras2, "hard_sigmoid_keras2"),
        (gelu_tanh, "gelu_tanh"),
    ]
    for canonical, name in _KERAS_NAME.items():
        known.append((keras.activations.get(name), canonical))
        # keras.ops.<name> computes the same function (keras.activations wraps it).
        op = getattr(keras.ops, name, None)
        if op is not None:
            known.append((op, canonical))
    return known


def canonical_activation(function: Any, layer: Any, option: str, keras: Any) -> str:
    for known, canonical in _known_activations(keras):
        if function is known:
            return canonical
    try:
        shown = keras.activations.serialize(function)
    except Exception:  # only for the message: fall back to repr
        shown = repr(function)
    supported = [*sorted(_KERAS_NAME.values()), f"{_REGISTERED_PACKAGE}.hard_sigmoid_keras2"]
    raise UnsupportedFeatureError(
        f"layer {layer.name!r}: {option}={shown!r} is not supported; use one of {supported} "
        "(Keras's own functions, e.g. passed by name)"
    )


def keras_activation(name: str | None) -> Any:
    if name == "hard_sigmoid_keras2":
        register_keras_activations()
        return hard_sigmoid_keras2
    if name == "gelu_tanh":
        register_keras_activations()
        return gelu_tanh
    return _KERAS_NAME[name or "linear"]
