"""Running Keras layers and models compiled, in inference mode, on numpy input."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..._imports import require
from ...canonical import is_float_dtype
from ...errors import UnsupportedFeatureError, WeightShapeError
from ...masks import mask_from_lengths
from .tracing import Traced

# One compiled function per Keras layer or model, dropped when the layer is.
_COMPILED: weakref.WeakKeyDictionary[Any, Callable[..., Any]] = weakref.WeakKeyDictionary()


def run_keras(
    layer_or_model: Any,
    x: np.ndarray,
    *,
    initial_states: Sequence[np.ndarray] | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Run a Keras layer or ``Sequential`` compiled, in inference mode, on numpy input.

    The input is cast to the layer's compute dtype. Stateful layers update their states, as
    any call does. The compiled function is cached per layer object.

    Args:
        layer_or_model: what :func:`keras_to_canonical` accepts.
        x: input (B, T, D).
        initial_states: the layer's initial states in Keras order (e.g. ``[h_f, c_f, h_b,
            c_b]``), each (B, H); single layers only, since a Sequential takes none.
        lengths: valid steps per row (B,) of right-padded input, each in 1..T; passed to
            Keras as a boolean ``mask`` (B, T).

    Returns:
        numpy arrays in the order of ``output_names(keras_to_canonical(layer_or_model))``.

    Example:
        >>> layer = keras.layers.SimpleRNN(4, return_sequences=True)
        >>> layer.build((None, None, 3))
        >>> (y,) = run_keras(layer, np.zeros((2, 5, 3)))
        >>> y.shape, y.dtype
        ((2, 5, 4), dtype('float32'))
    """
    keras = require("keras")
    if keras.backend.backend() != "tensorflow":
        raise UnsupportedFeatureError(
            f"run_keras compiles with tf.function and needs the TensorFlow backend; Keras "
            f"uses {keras.backend.backend()!r} (set KERAS_BACKEND=tensorflow)"
        )
    # Runs any layer, even one keras_to_canonical refuses, so that it can be compared.
    dtype = _compute_dtype(layer_or_model, keras)
    x = np.asarray(x, dtype=dtype)
    if x.ndim != 3:
        raise WeightShapeError(f"x: expected shape (batch, time, features), got {x.shape}")
    states = None
    if initial_states is not None:
        if isinstance(layer_or_model, keras.Sequential):
            raise UnsupportedFeatureError(
                "initial_states: a Keras Sequential takes no initial_state; run the layer "
                "on its own, or convert and use the canonical stack"
            )
        states = [np.asarray(s, dtype=dtype) for s in initial_states]
    mask = None if lengths is None else mask_from_lengths(lengths, x.shape[0], x.shape[1])
    tf = require("tensorflow")
    result = _compiled(layer_or_model)(
        tf.constant(x),
        None if states is None else [tf.constant(s) for s in states],
        None if mask is None else tf.constant(mask),
    )
    # Keras returns (outputs..., states...) in the order output_names() gives them.
    return tuple(np.asarray(value) for value in keras.tree.flatten(result))


def compute_dtype(obj: Any) -> str:
    """The least precise dtype that ``obj`` or a layer inside it computes in.

    A mixed-precision policy (``"mixed_float16"``, ``"mixed_bfloat16"``) keeps float32
    variables and computes in float16 or bfloat16; a Bidirectional's halves may differ
    from the wrapper. Works for Keras 3 and tf_keras layers and models alike.

    Example:
        >>> compute_dtype(keras.layers.GRU(2, dtype="mixed_float16"))
        'float16'
    """
    from ...comparison import least_precise

    members = [obj, *getattr(obj, "layers", []), *_recurrent_members_any(obj)]
    dtypes = [getattr(member, "compute_dtype", None) for member in members]
    floats = [dtype for dtype in dtypes if isinstance(dtype, str) and is_float_dtype(dtype)]
    return least_precise(*floats) if floats else "float32"


def _recurrent_members_any(obj: Any) -> list[Any]:
    """The halves of Bidirectional wrappers in ``obj`` (itself or its layers), by attribute."""
    layers = [obj, *getattr(obj, "layers", [])]
    return [
        half
        for layer in layers
        for half in (getattr(layer, "forward_layer", None), getattr(layer, "backward_layer", None))
        if half is not None
    ]


def _compute_dtype(layer_or_model: Any, keras: Any) -> str:
    if isinstance(layer_or_model, keras.Sequential):
        first = [m for m in layer_or_model.layers if not isinstance(m, keras.layers.InputLayer)]
        return first[0].compute_dtype
    return layer_or_model.compute_dtype


def _compiled(layer_or_model: Any) -> Callable[..., Any]:
    try:
        return _COMPILED[layer_or_model]
    except KeyError:
        pass
    # Keras 3 on TensorFlow: tf.function traces the layer's call into a graph, the way
    # model.predict runs it (AutoGraph only where the call needs it: .tracing). TensorFlow
    # counts retracing per Python code object, so each layer gets its own callable object
    # rather than a closure sharing one code object.
    compiled = Traced(_LayerCall(layer_or_model))
    _COMPILED[layer_or_model] = compiled
    return compiled


class _LayerCall:
    """Calls a Keras layer in inference mode; holds it weakly so the cache does not keep it."""

    def __init__(self, layer_or_model: Any) -> None:
        self._target = weakref.ref(layer_or_model)

    def __call__(self, x: Any, states: Any, mask: Any) -> Any:
        kwargs: dict[str, Any] = {"training": False}
        if states is not None:
            kwargs["initial_state"] = list(states)
        if mask is not None:
            kwargs["mask"] = mask
        with warnings.catch_warnings():
            # A Sequential passes the mask on to its layers but warns that it cannot return
            # one itself; the warning is about its output mask, which nothing here uses.
            warnings.filterwarnings("ignore", message=".*does not support masking.*")
            return self._layer()(x, **kwargs)

    def _layer(self) -> Any:
        layer = self._target()
        if layer is None:  # only reachable if a traced function outlives its layer
            raise ReferenceError("the Keras layer of this compiled function no longer exists")
        return layer
