"""The runs of a whole model besides the reference: its torch port, Keras, your own port.

Each builder returns ``(RunSpec, runner)`` pairs; a runner returns the outputs as float64
arrays and the numerics settings it used. Nothing runs until a runner is called, so a run
that fails (a file Keras cannot load, say) fails alone.
"""

from __future__ import annotations

import copy
import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..errors import UnsupportedFeatureError
from ..frameworks.base import RunSpec

# A run returns its outputs and the numerics settings it used.
Runner = Callable[[], tuple[Sequence[np.ndarray], dict[str, object]]]


def torch_runs(
    module: Any,
    arrays: list[np.ndarray],
    device: str,
    dtypes: list[str],
    tf32: bool,
    subject: str,
    paths: Sequence[str] = ("",),
) -> list[tuple[RunSpec, Runner]]:
    specs = [
        RunSpec("torch", device, dtype, tf32, subject=subject, path=path)
        for dtype in dtypes
        for path in paths
    ]
    return [(spec, functools.partial(_run_torch, module, arrays, spec)) for spec in specs]


def _run_torch(
    module: Any, arrays: Sequence[np.ndarray], spec: RunSpec
) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
    """Run a torch module on numpy inputs (ids as int64, features in the spec's dtype)."""
    from ..frameworks.torch import RecurrentOps, kernel_flags

    torch = require("torch")
    target = torch.device(spec.device.replace("gpu", "cuda"))
    precision = getattr(torch, spec.dtype)
    parameter = next(module.parameters(), None)
    if parameter is not None and (parameter.dtype, parameter.device) != (precision, target):
        module = copy.deepcopy(module).to(device=target, dtype=precision)  # the caller's stays
    tensors = [
        torch.as_tensor(x, dtype=torch.int64 if x.dtype.kind in "iu" else precision).to(target)
        for x in arrays
    ]
    with kernel_flags(torch, spec) as settings, torch.no_grad(), RecurrentOps() as ops:
        result = module(*tensors)
    arrays_out = tuple(
        output.detach().to("cpu", torch.float64).numpy() for output in _flatten(result)
    )
    return arrays_out, {**settings, "kernel": ops.kernel}


def _flatten(result: Any) -> list[Any]:
    """The tensors a module returned, in order: ``(output, (h_n, c_n))`` gives three."""
    if isinstance(result, (tuple, list)):
        return [tensor for item in result for tensor in _flatten(item)]
    return [result]


def keras_loader(source: Any) -> Callable[[], Any]:
    """The Keras model to run, loaded once on first use (a load failure fails each run)."""

    @functools.cache
    def load() -> Any:
        from .live import keras_flavour

        if keras_flavour(source) is not None:
            return source
        if not isinstance(source, (str, os.PathLike)):
            raise UnsupportedFeatureError(f"{type(source).__name__} is not a Keras model")
        from ..keras_files import read_spec

        path = os.fspath(source)
        if read_spec(path).major < 3:
            raise UnsupportedFeatureError(
                f"{path} was written by Keras 2 (tf_keras): Keras 3 would run it with its own "
                "layer semantics; load it with tf_keras and compare the live model"
            )
        keras = require("keras")
        return keras.saving.load_model(path, safe_mode=True)

    return load


def run_keras(
    load: Callable[[], Any], arrays: Sequence[np.ndarray], device: str
) -> tuple[list[np.ndarray], dict[str, object]]:
    model = load()
    with _keras_device(device):
        result = model(list(arrays) if len(arrays) > 1 else arrays[0], training=False)
    outputs = result if isinstance(result, (list, tuple)) else [result]
    return [_to_numpy(output) for output in outputs], {"model": "as loaded"}


def _to_numpy(value: Any) -> np.ndarray:
    """Eager tensors through ``.numpy()``: ``np.asarray`` on them warns under NumPy 2."""
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value, np.float64)


def _keras_device(device: str) -> Any:
    """Keras 3's device scope (``cpu:0``, ``gpu:N``), or TensorFlow's for tf_keras."""
    name = "cpu:0" if device == "cpu" else device
    keras = require("keras")
    if hasattr(keras, "device"):
        return keras.device(name)
    return require("tensorflow").device(name.upper())


def against_runs(
    against: Any,
    arrays: list[np.ndarray],
    devices: list[str],
    dtypes: list[str],
    tf32: bool,
) -> list[tuple[RunSpec, Runner]]:
    """Runs of your own port: a torch module in each dtype, a Keras model as it is."""
    from .live import keras_flavour

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(against, torch.nn.Module):
        return [
            run
            for device in devices
            for run in torch_runs(against, arrays, device, dtypes, tf32, "against")
        ]
    if keras_flavour(against) is not None or isinstance(against, (str, os.PathLike)):
        load = keras_loader(against)
        return [
            (
                RunSpec("keras", device, "float32", subject="against"),
                functools.partial(run_keras, load, arrays, device),
            )
            for device in devices
        ]

    def refuse() -> tuple[Sequence[np.ndarray], dict[str, object]]:
        raise UnsupportedFeatureError(
            f"against: expected a torch module, a Keras model or a Keras file, got "
            f"{type(against).__name__}"
        )

    return [(RunSpec("torch", "cpu", "float32", subject="against"), refuse)]


__all__ = ["Runner", "against_runs", "keras_loader", "run_keras", "torch_runs"]
