"""Keras 3 on TensorFlow as a framework: the converted layer, compiled, TF32 applied per run.

Building a Keras layer and tracing its compiled function takes a tenth of a second or more,
far longer than running a small model. Runs therefore share one built layer per structure
(cell kinds, sizes, options, flags), dtype and device (:mod:`.keras_shared`), and only set
its weights: the compiled function, cached per layer by the adapter, is traced again only
for new shapes.

Kernel paths: ``unroll`` and ``cudnn-off`` are options of the built layer; ``onednn-off``
and ``onednn-on`` are a setting TensorFlow reads at import, so a run asking for the
setting this process does not have goes to a process started with it
(:mod:`~xframe_bilstm.frameworks.process`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..errors import UnsupportedFeatureError
from ..graph import ModelGraph
from ..inputs import as_list
from ..reference import Reading
from ..stack_graph import as_graph, takes_lengths
from .base import Framework, RunSpec
from .keras_shared import SHARED, keras_port, layer_options
from .process import ProcessRunError, run_elsewhere

_ONEDNN = {"onednn-on": True, "onednn-off": False}


class KerasFramework(Framework):
    name = "keras"
    differentiates = True
    differentiates_graphs = True
    module = "keras"

    def devices(self) -> list[str]:
        tf = require("tensorflow")
        gpus = tf.config.list_logical_devices("GPU")
        return ["cpu"] + [f"gpu:{i}" for i in range(len(gpus))]

    def dtypes(self, device: str) -> list[str]:
        return ["float32", "float64", "float16", "bfloat16"]

    def paths(self, device: str) -> list[str]:
        # oneDNN's optimizations are CPU kernels; cuDNN is the GPU's.
        return ["unroll", *(_ONEDNN if device == "cpu" else ["cudnn-off"])]

    def versions(self) -> dict[str, str]:
        keras = require("keras")
        tf = require("tensorflow")
        return {"keras": keras.__version__, "tensorflow": tf.__version__}

    def run(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
        tf = require("tensorflow")
        if spec.path in _ONEDNN and _onednn_enabled() != _ONEDNN[spec.path]:
            return _run_with_onednn(stack, x, spec, initial_states, lengths)
        graph = as_graph(stack)
        options = layer_options(spec)
        # SHARED: no other thread may set a shared layer's weights mid-run.
        with _tf32(tf, spec.tf32) as settings, tf.device(spec.device.upper()), SHARED:
            built = keras_port(graph, spec, _batch(x))
            how = "rebuilt from the reading"
            outputs, called = _call(built, graph, x, initial_states, lengths, how)
        return outputs, {**settings, **options, **_kernel(tf, options), **called}

    def supports(self, reading: Reading) -> str | None:
        from ..adapters.keras import graph_refusal

        return graph_refusal(as_graph(reading))

    def gradients(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        cotangents: Sequence[np.ndarray],
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> Any:
        """``tf.GradientTape`` on the layer or model that runs (see :mod:`.keras_gradients`)."""
        tf = require("tensorflow")
        _check_gradient_path(tf, spec)
        graph = as_graph(stack)
        with _tf32(tf, spec.tf32), tf.device(spec.device.upper()), SHARED:
            built = keras_port(graph, spec, _batch(x))
            return _differentiate(tf, built, graph, x, cotangents, initial_states, lengths)


class KerasLayerFramework(KerasFramework):
    """A Keras layer or model of the user's (or a Keras 3 file as Keras loads it), run by
    its own ``call``.

    ``compare(source)`` runs a live Keras source as itself beside the layers rebuilt from its
    reading. It computes in its own compute dtype, on its default kernel path, from zero
    states (or the ``initial_states`` given) like every other run; a stateful layer's carried
    states are put back afterwards, so comparing never advances the user's sequence. The
    reading a run is given is ignored: only this layer's own computation is compared. A
    model whose reading is a graph takes one array per input and returns its outputs.
    """

    def __init__(self, load: Callable[[], Any]) -> None:
        self.load = load  # the layer, loaded on the first run: a failure fails runs only

    def supports(self, reading: Reading) -> str | None:
        return None  # it runs itself, whatever the library read it as

    @property
    def own(self) -> Any:
        return self.load()

    def paths(self, device: str) -> list[str]:
        return []  # the user's layer runs as they built it

    def run(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
        tf = require("tensorflow")
        from ..adapters.keras import reset_keras_states, restore_states, snapshot_states

        layer = self.own
        graph = as_graph(stack)
        _check_batch(layer, x)
        saved = snapshot_states(layer)
        try:
            reset_keras_states(layer)  # from zero states, as every other run starts
            with _tf32(tf, spec.tf32) as settings, tf.device(spec.device.upper()):
                outputs, called = _call(layer, graph, x, initial_states, lengths, "as loaded")
        finally:
            restore_states(layer, saved)
        onednn = _onednn_enabled()
        return outputs, {
            **settings,
            "layer": f"{type(layer).__name__} {layer.name!r}",
            **called,
            "oneDNN": onednn,
            "kernel": f"oneDNN {'on' if onednn else 'off'}",
        }

    def gradients(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        cotangents: Sequence[np.ndarray],
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> Any:
        """``tf.GradientTape`` on the user's own layer, from zero states (or those given);
        its carried states and weights are as they were afterwards."""
        tf = require("tensorflow")
        from ..adapters.keras import reset_keras_states, restore_states, snapshot_states

        layer = self.own
        graph = as_graph(stack)
        saved = snapshot_states(layer)
        try:
            reset_keras_states(layer)
            with _tf32(tf, spec.tf32), tf.device(spec.device.upper()):
                return _differentiate(tf, layer, graph, x, cotangents, initial_states, lengths)
        finally:
            restore_states(layer, saved)


def _batch(x: Any) -> int:
    return int(as_list(x)[0].shape[0])


def _check_batch(layer: Any, x: Any) -> None:
    """A stateful layer keeps states for the batch it was built for."""
    from ..adapters.keras import fixed_batch_size

    fixed = fixed_batch_size(layer)
    if fixed is not None and fixed != _batch(x):
        raise UnsupportedFeatureError(
            f"the stateful layer {layer.name!r} keeps states for a batch of {fixed}, and "
            f"the input has {_batch(x)} rows; compare it with batch={fixed} (or inputs "
            f"of {fixed} rows)"
        )


def _call(
    built: Any,
    graph: ModelGraph,
    x: Any,
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
    how: str,
) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
    """Run a Keras layer or model of ``graph`` as the graph is called: where it takes
    lengths (a stack's), compiled with the input, initial states and the mask; else on one
    array per model input, as its own call computes it. Float64 outputs, and how it ran."""
    if takes_lengths(graph):
        from ..adapters.keras import run_keras

        result = run_keras(built, x, initial_states=initial_states, lengths=lengths)
        outputs = tuple(np.asarray(a, dtype=np.float64) for a in result)
        return outputs, {"compiled": "tf.function"}
    arrays = as_list(x)
    result = built(arrays if len(arrays) > 1 else arrays[0], training=False)
    results = result if isinstance(result, (list, tuple)) else [result]
    # Eager tensors through ``.numpy()``: np.asarray on them warns under NumPy 2.
    outputs = tuple(
        np.asarray(r.numpy() if hasattr(r, "numpy") else r, np.float64) for r in results
    )
    return outputs, {"model": f"{type(built).__name__} {built.name!r}, {how}"}


def _check_gradient_path(tf: Any, spec: RunSpec) -> None:
    """A oneDNN setting other than this process's runs in another process, forward only."""
    if spec.path in _ONEDNN and _onednn_enabled() != _ONEDNN[spec.path]:
        raise UnsupportedFeatureError(
            f"{spec.label}: gradients are taken in this process, whose TensorFlow has the "
            "other oneDNN setting; its forward outputs are compared"
        )


def _differentiate(
    tf: Any,
    built: Any,
    graph: ModelGraph,
    x: Any,
    cotangents: Sequence[np.ndarray],
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
) -> Any:
    """Gradients of a Keras layer or model of ``graph``, called as :func:`_call` calls it:
    a layer's weights by canonical name, a model's by ``<layer>/<weight>``."""
    from .keras_gradients import keras_gradients, keras_model_gradients

    keras = require("keras")
    if takes_lengths(graph):
        return keras_gradients(tf, keras, built, x, cotangents, initial_states, lengths)
    return keras_model_gradients(tf, keras, built, x, cotangents)


def _kernel(tf: Any, options: dict[str, Any]) -> dict[str, object]:
    """The oneDNN setting of this process and the kernel path the layer options select."""
    onednn = _onednn_enabled()
    kernel = [f"oneDNN {'on' if onednn else 'off'}"]
    kernel += ["unrolled"] if options["unroll"] else []
    kernel += ["cuDNN off"] if options["use_cudnn"] is False else []
    return {"oneDNN": onednn, "kernel": ", ".join(kernel)}


def _onednn_enabled() -> bool:
    """Whether this process's TensorFlow runs oneDNN's optimizations (fixed at import)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except ImportError:  # the private module moved: read the setting TensorFlow read
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").lower() not in ("0", "false")


def _run_with_onednn(
    stack: Reading,
    x: np.ndarray,
    spec: RunSpec,
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
    """Run the default path in a process whose TensorFlow has the other oneDNN setting."""
    wanted = _ONEDNN[spec.path]
    environment = {"TF_ENABLE_ONEDNN_OPTS": "1" if wanted else "0"}
    default = dataclasses.replace(spec, path="")
    outputs, settings = run_elsewhere(
        environment,
        KerasFramework,
        stack,
        x,
        default,
        initial_states=initial_states,
        lengths=lengths,
    )
    if settings.get("oneDNN") != wanted:
        raise ProcessRunError(
            f"TensorFlow ignored TF_ENABLE_ONEDNN_OPTS={environment['TF_ENABLE_ONEDNN_OPTS']} "
            "(this build may have no oneDNN optimizations to switch)"
        )
    variables = " ".join(f"{name}={value}" for name, value in environment.items())
    process = f"separate ({variables})"
    kernel = f"{settings['kernel']}, process: {process}"
    return outputs, {**settings, "process": process, "kernel": kernel}


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
