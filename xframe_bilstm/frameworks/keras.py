"""Keras 3 on TensorFlow as a framework: the converted layer, compiled, TF32 applied per run.

Building a Keras layer and tracing its compiled function takes a tenth of a second or more,
far longer than running a small model. Runs therefore share one built layer per structure
(cell kinds, sizes, options, flags), dtype and device, and only set its weights: the
compiled function, cached per layer by the adapter, is traced again only for new shapes.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..canonical import RecurrentStack
from .base import Framework, RunSpec


class KerasFramework(Framework):
    name = "keras"
    module = "keras"

    def devices(self) -> list[str]:
        tf = require("tensorflow")
        gpus = tf.config.list_logical_devices("GPU")
        return ["cpu"] + [f"gpu:{i}" for i in range(len(gpus))]

    def dtypes(self, device: str) -> list[str]:
        return ["float32", "float64", "float16", "bfloat16"]

    def versions(self) -> dict[str, str]:
        keras = require("keras")
        tf = require("tensorflow")
        return {"keras": keras.__version__, "tensorflow": tf.__version__}

    def run(
        self,
        stack: RecurrentStack,
        x: np.ndarray,
        spec: RunSpec,
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
        tf = require("tensorflow")
        from ..adapters.keras import canonical_to_keras, run_keras

        with _tf32(tf, spec.tf32) as settings, tf.device(spec.device.upper()):
            if stack.stateful:  # its states live in the layer: never share one
                layer = canonical_to_keras(stack, dtype=spec.dtype, batch_size=int(x.shape[0]))
                result = run_keras(layer, x, initial_states=initial_states, lengths=lengths)
            else:
                with _SHARED:  # no other thread may set the weights mid-run
                    layer = _shared_layer(stack, spec)
                    result = run_keras(layer, x, initial_states=initial_states, lengths=lengths)
        outputs = tuple(np.asarray(a, dtype=np.float64) for a in result)
        return outputs, {**settings, "compiled": "tf.function"}


# Built layers by (structure, dtype, device), least recently used first. Runs of one
# structure come together in a matrix, so a few entries reuse nearly every layer.
_LAYERS: OrderedDict[Hashable, Any] = OrderedDict()
_LAYERS_KEPT = 32
_SHARED = threading.RLock()


def _shared_layer(stack: RecurrentStack, spec: RunSpec) -> Any:
    """A built layer of ``stack``'s structure holding ``stack``'s weights."""
    from ..adapters.keras import canonical_to_keras

    key = (structure_key(stack), spec.dtype, spec.device)
    layer = _LAYERS.get(key)
    if layer is None:
        layer = canonical_to_keras(stack, dtype=spec.dtype)
        _LAYERS[key] = layer
        if len(_LAYERS) > _LAYERS_KEPT:
            _LAYERS.popitem(last=False)
    else:
        _LAYERS.move_to_end(key)
        _set_stack_weights(stack, layer)
    return layer


def _set_stack_weights(stack: RecurrentStack, built: Any) -> None:
    """Put ``stack``'s weights into a layer or Sequential that canonical_to_keras built."""
    keras = require("keras")
    # The adapter's own per-layer setter, so the bias folding stays in one place.
    from ..adapters.keras import set_layer_weights

    members = (
        [built]
        if len(stack.layers) == 1
        else [m for m in built.layers if not isinstance(m, keras.layers.InputLayer)]
    )
    for canonical, member in zip(stack.layers, members, strict=True):
        set_layer_weights(canonical, member)


def structure_key(stack: RecurrentStack) -> Hashable:
    """Everything about a stack that a built Keras layer fixes, weights aside.

    Example:
        >>> from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer
        >>> def stack(value):
        ...     w = DirectionWeights(np.full((3, 2), value), np.zeros((2, 2)))
        ...     layer = RecurrentLayer("simple_rnn", 3, 2, (w,), recurrent_activation=None)
        ...     return RecurrentStack((layer,))
        >>> structure_key(stack(0.0)) == structure_key(stack(1.0))
        True
    """
    layers = tuple(
        (
            layer.cell,
            layer.input_size,
            layer.units,
            layer.direction,
            layer.merge_mode,
            layer.activation,
            layer.recurrent_activation,
            layer.reset_after,
            layer.bias_layout,
        )
        for layer in stack.layers
    )
    return (layers, stack.return_sequences, stack.return_state)


@contextlib.contextmanager
def _tf32(tf: Any, enabled: bool) -> Iterator[dict[str, object]]:
    """Set TensorFlow's TF32 switch for one run, and put the old value back."""
    saved = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(enabled)
    try:
        yield {
            "tensor_float_32_execution": enabled,
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
        }
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(saved)
