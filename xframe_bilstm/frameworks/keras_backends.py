"""Keras 3 on its JAX and PyTorch backends as frameworks: ``keras-jax`` and ``keras-torch``.

Keras fixes its backend when it is imported, so each column runs in a process of its own
started with ``KERAS_BACKEND`` set (:mod:`~xframe_bilstm.frameworks.process`, as the
oneDNN-off runs do), kept for the life of this one. The reading goes to it; there it is
rebuilt into the same Keras model the ``keras`` column runs
(:mod:`~xframe_bilstm.frameworks.keras_built`) and called in inference mode (not
``predict_on_batch``, whose data adapters make float64 inputs float32). JAX runs the
recurrence as a ``lax.scan`` compiled by XLA; PyTorch runs eagerly. A live Keras model or
a Keras 3 file, the source's ``@original``, goes as a ``.keras`` file that the other
backend loads. Runs are on the CPU: the child sees no GPU (``JAX_PLATFORMS=cpu``,
``CUDA_VISIBLE_DEVICES`` empty), whatever the machine has. Both run float32 only: Keras 3.15 rounds
float64 models to float32 precision on these backends (see ``dtypes``).

Both differentiate, in their child process, with the backend's own autodiff (``jax.vjp``;
``torch.autograd`` through the Keras ops): see
:mod:`~xframe_bilstm.frameworks.keras_backend_gradients`.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..errors import UnsupportedFeatureError
from ..reference import Reading
from ..stack_graph import as_graph, takes_lengths
from .base import Framework, RunSpec
from .keras_built import as_outputs, built_model, model_inputs
from .process import ProcessRunError, call_elsewhere, run_elsewhere

# What each backend's child process is started with: the backend, and the CPU only.
_ENVIRONMENTS = {
    "jax": {"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "JAX_ENABLE_X64": "1"},
    "torch": {"KERAS_BACKEND": "torch", "CUDA_VISIBLE_DEVICES": ""},
}
_PACKAGES = {"jax": ("jax", "jaxlib"), "torch": ("torch",)}


class KerasBackendFramework(Framework):
    """The Keras model rebuilt from the reading (as the ``keras`` column runs it), on another
    Keras backend, in a process of its own."""

    backend = ""
    on_request = True
    differentiates = True

    @classmethod
    def available(cls) -> bool:
        import importlib.util

        modules = ("keras", *_PACKAGES[cls.backend])
        return all(importlib.util.find_spec(m) is not None for m in modules)

    def dtypes(self, device: str) -> list[str]:
        # Float32 only: Keras 3.15 does not keep float64 on these backends (JAX: an LSTM
        # rounds to float32 inside its scan, a SimpleRNN's scan refuses its carry; PyTorch:
        # a float64 Dense is 1.7e-7 from numpy's product), so a float64 run would fail on
        # the backend's rounding, not on the model.
        return ["float32"]

    def versions(self) -> dict[str, str]:
        return {package: _version(package) for package in ("keras", *_PACKAGES[self.backend])}

    def supports(self, reading: Reading) -> str | None:
        from ..adapters.keras import graph_refusal

        graph = as_graph(reading)
        custom = [f"layer {r.name!r} ({r.class_name})" for r in graph.layers if r.kind == "custom"]
        if custom:  # the user's classes live in this process only
            return (
                f"{self.name} runs in a process of its own, which cannot receive your layer "
                f"classes: {', '.join(custom)}"
            )
        return graph_refusal(graph)

    def run(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
        return _elsewhere(
            self.backend, _BUILDERS[self.backend], stack, x, spec, initial_states, lengths
        )

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
        """The backend's autodiff on the layer rebuilt from ``stack``, in its process."""
        arguments = (stack, x, spec, cotangents, initial_states, lengths)
        return call_elsewhere(_ENVIRONMENTS[self.backend], _child_gradients, False, *arguments)


class KerasJaxFramework(KerasBackendFramework):
    name = "keras-jax"
    module = "jax"
    backend = "jax"


class KerasTorchFramework(KerasBackendFramework):
    name = "keras-torch"
    module = "torch"
    backend = "torch"


class KerasFileBackendFramework(KerasBackendFramework):
    """A live Keras model or a Keras 3 file (the source's ``@original``), saved as a
    ``.keras`` file and loaded by Keras on another backend, run by its own ``call``."""

    def __init__(self, backend: str, load: Callable[[], Any]) -> None:
        self.backend = backend
        self.name = f"keras-{backend}"
        self.load = load  # the Keras 3 model on this process's backend, loaded on first run
        self._file: str | None = None

    def supports(self, reading: Reading) -> str | None:
        return None  # it runs itself, whatever the library read it as

    def _saved(self) -> str:
        """The model's ``.keras`` file, saved on first use; it goes with this framework
        object (or at exit, whichever is first)."""
        if self._file is None:
            self._file = _saved(self.load())
            weakref.finalize(self, shutil.rmtree, os.path.dirname(self._file), True)
        return self._file

    def run(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
        spec = _with_path(spec, self._saved())
        return _elsewhere(self.backend, _LoadedRun, stack, x, spec, initial_states, lengths)

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
        """The backend's autodiff on the model loaded from the ``.keras`` file."""
        arguments = (stack, x, _with_path(spec, self._saved()), cotangents, initial_states, lengths)
        return call_elsewhere(_ENVIRONMENTS[self.backend], _child_gradients, True, *arguments)


def with_backend_originals(subject: Any, read: Any, frameworks: Any, specs: Any) -> Any:
    """``subject`` (the source's ``@original``) with, for a Keras model (live or a Keras 3
    file), its runs on each Keras backend column the plan runs, in the dtype its Keras run
    computes in. A lone layer has no ``.keras`` file of its own and runs rebuilt only."""
    planned = {spec.framework for spec, _ in specs}
    columns = [cls for cls in (KerasJaxFramework, KerasTorchFramework) if cls.name in planned]
    if not columns or read.framework != "keras" or read.original is None or not subject.runs:
        return subject  # and the original is not loaded for nothing
    try:
        if not hasattr(read.original(), "save"):
            return subject
    except Exception:  # cannot be loaded: its Keras run records why
        return subject
    own = subject.runs[0][0]
    extra = [
        (
            dataclasses.replace(own, framework=cls.name, device="cpu"),
            KerasFileBackendFramework(cls.backend, read.original),
        )
        for cls in columns
    ]
    return dataclasses.replace(subject, runs=[*subject.runs, *extra])


def _saved(model: Any) -> str:
    """``model`` saved as a ``.keras`` file in a directory of its own, for the caller to
    remove."""
    if not hasattr(model, "save"):
        raise UnsupportedFeatureError(
            f"{type(model).__name__} {getattr(model, 'name', '')!r} is a layer, not a model: "
            "only a Keras model can be saved for another backend; wrap it in keras.Sequential"
        )
    directory = tempfile.mkdtemp(prefix="xframe_keras_")
    path = os.path.join(directory, "original.keras")
    model.save(path)
    return path


def _with_path(spec: RunSpec, path: str) -> RunSpec:
    """The spec a loaded-model child run receives: the file rides in ``subject``."""
    return dataclasses.replace(spec, subject=f"{spec.subject}|{path}")


def _elsewhere(
    backend: str,
    request: type,
    stack: Reading,
    x: Any,
    spec: RunSpec,
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
    environment = _ENVIRONMENTS[backend]
    outputs, settings = run_elsewhere(
        environment, request, stack, x, spec, initial_states=initial_states, lengths=lengths
    )
    if settings.get("keras_backend") != backend:
        raise ProcessRunError(
            f"Keras ran on {settings.get('keras_backend')!r}, not {backend!r}: KERAS_BACKEND "
            "was not honoured (is ~/.keras/keras.json overriding it?)"
        )
    variables = " ".join(f"{k}={v}" for k, v in environment.items())
    return outputs, {**settings, "process": f"separate ({variables})"}


class _ChildRun:
    """What the child process runs: Keras on the backend it was started with."""

    def run(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
        keras = require("keras")
        model, inputs, options, how = self.model(stack, x, spec, initial_states, lengths)
        # Called, not predict_on_batch, on tensors of the arrays' own dtypes: Keras's data
        # adapters, and the torch backend's conversion of numpy, make float64 floatx.
        tensors = [keras.ops.convert_to_tensor(a, dtype=str(a.dtype)) for a in inputs]
        result = model(tensors if len(tensors) > 1 else tensors[0], training=False, **options)
        return as_outputs(result), {**_backend_settings(keras), "model": how}

    def model(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[Any, list[np.ndarray], dict[str, Any], str]:
        """The model, the arrays it takes, the keywords it is called with, and what it is."""
        with_states, with_lengths = initial_states is not None, lengths is not None
        model = built_model(stack, spec.dtype, with_states=with_states, with_lengths=with_lengths)
        inputs = model_inputs(stack, x, spec.dtype, initial_states, lengths)
        return model, inputs, {}, f"{type(model).__name__} {model.name!r}, rebuilt from the reading"


class _LoadedRun(_ChildRun):
    """A model loaded from the ``.keras`` file named in the spec, called on the run's
    inputs; where the reading takes lengths (a stack's layers), with the mask and the
    initial states given, as Keras's recurrent layers take them."""

    def model(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[Any, list[np.ndarray], dict[str, Any], str]:
        keras = require("keras")
        from ..masks import mask_from_lengths

        model = _load(spec)
        dtype = _compute_dtype(model)
        inputs = model_inputs(stack, x, dtype, None, None)
        options: dict[str, Any] = {}
        if takes_lengths(as_graph(stack)):
            if lengths is not None:
                options["mask"] = mask_from_lengths(lengths, *inputs[0].shape[:2])
            if initial_states is not None:
                if isinstance(model, keras.Sequential):
                    raise UnsupportedFeatureError(
                        "initial_states: a Keras Sequential takes no initial_state; compare "
                        "the recurrent layer on its own"
                    )
                options["initial_state"] = [np.asarray(s, dtype) for s in initial_states]
        return model, inputs, options, f"{type(model).__name__} {model.name!r}, loaded from .keras"


def _child_gradients(
    loaded: bool,
    stack: Reading,
    x: Any,
    spec: RunSpec,
    cotangents: Sequence[np.ndarray],
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
) -> Any:
    """In the child: the gradients of the rebuilt layer, or of the loaded model."""
    from .keras_backend_gradients import backend_gradients, rebuilt_layer

    if loaded:
        layer = _load(spec)
        dtype = _compute_dtype(layer)
    else:
        layer, dtype = rebuilt_layer(stack, spec), spec.dtype
    return backend_gradients(layer, np.asarray(x), dtype, cotangents, initial_states, lengths)


def _load(spec: RunSpec) -> Any:
    keras = require("keras")
    path = spec.subject.partition("|")[2]
    return keras.saving.load_model(path, compile=False)


def _compute_dtype(model: Any) -> str:
    from ..adapters.keras import compute_dtype

    return compute_dtype(model)


def _backend_settings(keras: Any) -> dict[str, object]:
    """The backend, its version, where it ran and how it compiled."""
    backend = keras.backend.backend()
    settings: dict[str, object] = {"keras": keras.__version__, "keras_backend": backend}
    if backend == "jax":
        jax = require("jax")
        device = jax.devices()[0]
        settings.update(
            jax=jax.__version__,
            device=f"{device.platform}:{device.id}",
            x64=bool(jax.config.jax_enable_x64),
            compiled="eager call; the recurrence compiled by XLA",
            kernel="lax.scan under XLA",
        )
    elif backend == "torch":
        torch = require("torch")
        from keras.src.backend.torch.core import get_device

        settings.update(
            torch=torch.__version__,
            device=str(get_device()),
            compiled="eager torch",
            kernel="Keras's own step loop of torch ops",
        )
    return settings


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


_BUILDERS: dict[str, type] = {"jax": _ChildRun, "torch": _ChildRun}

__all__ = ["KerasBackendFramework", "KerasJaxFramework", "KerasTorchFramework"]
