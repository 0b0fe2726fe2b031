"""Keras 3 on TensorFlow as a framework: the converted layer, compiled, TF32 applied per run."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
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
            layer = canonical_to_keras(stack, dtype=spec.dtype, batch_size=_batch(stack, x))
            result = run_keras(layer, x, initial_states=initial_states, lengths=lengths)
        outputs = tuple(np.asarray(a, dtype=np.float64) for a in result)
        return outputs, {**settings, "compiled": "tf.function"}


def _batch(stack: RecurrentStack, x: np.ndarray) -> int | None:
    return int(x.shape[0]) if stack.stateful else None


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
