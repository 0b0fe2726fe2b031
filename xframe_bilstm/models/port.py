"""Port a whole Keras model (a file or a live model) to PyTorch, checked as it is ported.

Rules of this module:

- A model that is only recurrent layers in a chain becomes the same
  :class:`~xframe_bilstm.adapters.torch.KerasRecurrent` that
  :func:`~xframe_bilstm.keras_to_torch` makes of the layers; anything else becomes a
  :class:`~xframe_bilstm.models.to_torch.KerasModel`.
- With ``verify``, the port runs on seeded inputs that include right- and left-padded rows
  (:func:`~xframe_bilstm.inputs.example_inputs`), and must match the expected
  outputs within the tolerance that float32 rounding explains for this model on these
  inputs (:func:`~xframe_bilstm.comparison.check_port`), at the coarser of the two
  sides' compute dtypes. The expected outputs are the original's own: a live model's call,
  or a file's model as the Keras that wrote it loads and runs it. Only where that Keras is
  missing or cannot run the file are they the float64 reference reading of the file, and
  the port's ``verified_against`` says so.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..comparison import check_port, least_precise, measure_noise
from ..graph import ModelGraph
from ..inputs import example_inputs
from ..reference import run_model_reference

Runner = Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]]


def port_graph(
    graph: ModelGraph,
    *,
    verify: bool = True,
    seed: int = 0,
    expected: Runner | None = None,
    label: str = "",
    compute_dtype: str = "float32",
    owned: bool = False,
) -> Any:
    """Build the torch module of ``graph`` and, with ``verify``, check it.

    The float64 and float32 reference runs that set the tolerance run before the port is
    built, so that they and the port are not in memory together.

    Args:
        graph: the model description.
        verify: run the port and compare it with ``expected`` (default: the float64
            reference) on seeded padded inputs.
        seed: seed of those inputs.
        expected: runs the original model on numpy inputs, e.g. a live Keras model.
        label: names the pair in the error message.
        compute_dtype: the dtype ``expected`` computes in (e.g. ``"float16"`` for a
            mixed-precision Keras model); the rounding of the less precise of it and the
            port's own dtype is allowed.
        owned: ``graph`` is the caller's to give away (read from a file for this port):
            a whole model's arrays leave it as the port's modules take them.

    Raises:
        ToleranceExceededError: the port and the original disagree.
    """
    require("torch")
    custom = verify and expected is not None and _has_custom(graph)
    checked = verify and not custom
    stack = graph.as_stack()
    if checked:  # the reference's runs first, while the port does not exist yet
        if stack is None:  # what no port reproduces is refused before anything runs
            from .to_torch import refuse_mask_traps

            refuse_mask_traps(graph)
        inputs = example_inputs(graph, seed=seed)
        exact = run_model_reference(graph, inputs)
        noise = measure_noise(graph, inputs, exact=exact)
        reference = exact if expected is None else tuple(expected(inputs))
    module: Any
    if stack is not None:
        from ..adapters.torch import canonical_to_torch

        module = canonical_to_torch(stack)
    else:
        from .to_torch import build_torch, build_torch_taking

        module = build_torch_taking(graph) if owned and not custom else build_torch(graph)
    module.eval()
    if custom:
        assert expected is not None
        _check_custom(graph, module, seed, expected, label, compute_dtype)
    elif checked:
        from ..adapters.torch import float_dtype, run_module

        actual = run_module(module, inputs)
        port_dtype = str(float_dtype(module)).split(".")[-1]
        label = label or f"{graph.source} vs its torch port"
        dtype = least_precise(port_dtype, compute_dtype)
        check_port(
            graph,
            inputs,
            reference,
            actual,
            label=label,
            dtype=dtype,
            original_dtype="float64",  # the reference stands for the original
            noise=noise,
        )
    return module


def _has_custom(graph: ModelGraph) -> bool:
    from .torch_custom import has_custom  # imported where a check needs it

    return has_custom(graph)


def _check_custom(
    graph: ModelGraph,
    module: Any,
    seed: int,
    expected: Runner,
    label: str,
    compute_dtype: str,
) -> None:
    """Check a port holding custom layers against the original's own outputs."""
    from ..adapters.torch import float_dtype
    from .torch_custom import check_custom_port, run_port

    inputs = example_inputs(graph, seed=seed)
    reference = tuple(expected(inputs))
    actual = run_port(module, graph, inputs)
    port_dtype = str(float_dtype(module)).split(".")[-1]
    label = label or f"{graph.source} vs its torch port"
    dtype = least_precise(port_dtype, compute_dtype)
    check_custom_port(graph, module, inputs, reference, actual, label=label, dtype=dtype)


def describe_port(module: Any, keras_dtype: str | None, verified_against: str | None) -> None:
    """Record on the port what it computes in, and what it was checked against."""
    parameter = next(module.parameters(), None)
    module.compute_dtype = "float32" if parameter is None else str(parameter.dtype).split(".")[-1]
    module.keras_compute_dtype = keras_dtype
    module.verified_against = verified_against


def port_file(
    path: Any, *, verify: bool, seed: int, custom_objects: Mapping[str, Any] | None = None
) -> Any:
    """Port a ``.keras``/``.h5`` file, checked against the model its own Keras loads.

    Where that Keras is missing or cannot load or run the file, the check is against the
    float64 reference reading of the file, and ``verified_against`` says so and why.
    """
    from ..keras_files import read_model

    graph = read_model(path, map_weights=True)  # the port copies them once, from the file
    if not verify:
        module = port_graph(graph, verify=False, owned=True)
        describe_port(module, None, None)
        return module
    inputs = example_inputs(graph, seed=seed)
    loaded = _run_keras_file(path, graph.keras_major, inputs, custom_objects)
    if isinstance(loaded, str):  # why Keras could not run it: check against the reference
        _refuse_custom_fallback(graph, loaded)
        against = f"the float64 reference reading of the file ({loaded})"
        module = port_graph(
            graph, seed=seed, label=f"{path}: {against} vs its torch port", owned=True
        )
        describe_port(module, None, against)
        return module
    loader, model, keras_dtype, outputs = loaded

    def expected(given: Any) -> tuple[np.ndarray, ...]:
        # port_graph makes the same seeded inputs, which Keras has already run on.
        same = len(given) == len(inputs) and all(map(np.array_equal, given, inputs))
        return outputs if same else call_keras_model(model, given)

    against = f"the model as {loader} loads and runs it"
    module = port_graph(
        graph,
        seed=seed,
        expected=expected,
        compute_dtype=keras_dtype,
        label=f"{path}: {against} (computes in {keras_dtype}) vs its torch port",
        owned=True,
    )
    describe_port(module, keras_dtype, against)
    return module


def _refuse_custom_fallback(graph: ModelGraph, why: str) -> None:
    """Refuse to verify a model with custom layers against the reference, which cannot run them."""
    from ..custom import custom_refusal

    customs = [record for record in graph.layers if record.kind == "custom"]
    if customs:
        from ..errors import UnsupportedFeatureError

        refusals = "; ".join(custom_refusal(record, "the float64 reference") for record in customs)
        raise UnsupportedFeatureError(
            f"{graph.source}: its port cannot be verified: Keras could not run the file "
            f"({why}), and {refusals}. Make the class known to Keras "
            "(keras.saving.register_keras_serializable, or custom_objects={'ClassName': cls}), "
            "or pass verify=False"
        )


def _run_keras_file(
    path: Any,
    major: int,
    inputs: list[np.ndarray],
    custom_objects: Mapping[str, Any] | None = None,
) -> tuple[str, Any, str, tuple[np.ndarray, ...]] | str:
    """Load a model file with the Keras that wrote it and run it on ``inputs``.

    Returns ``(loader, model, compute dtype, outputs)``, or, where that Keras cannot do it here,
    the reason in words. Loading never executes code from the file: the reader has
    already refused Lambda layers and names of modules outside Keras.
    """
    from ..errors import FrameworkUnavailableError

    name = "keras" if major >= 3 else "tf_keras"
    try:
        framework = require(name)
    except FrameworkUnavailableError:
        writer = "Keras 3" if major >= 3 else "Keras 2 (tf_keras)"
        return f"{name} is not installed to load this {writer} file"
    if major >= 3:
        from ..adapters.keras import register_keras_activations

        register_keras_activations()  # Keras 2's hard sigmoid, as the port saves it
        loader = "keras.saving.load_model(safe_mode=True)"
        load = functools.partial(
            framework.saving.load_model,
            path,
            safe_mode=True,
            compile=False,
            custom_objects=custom_objects,
        )
    else:
        loader = "tf_keras.models.load_model(safe_mode=True)"
        load = functools.partial(
            framework.models.load_model,
            path,
            compile=False,
            safe_mode=True,
            custom_objects=custom_objects,
        )
    try:
        model = load()
        outputs = call_keras_model(model, inputs)
    except Exception as error:  # Keras's own failure: say so and fall back
        return f"{loader} could not load or run it: {type(error).__name__}: {error}"
    from ..adapters.keras import compute_dtype

    return loader, model, compute_dtype(model), outputs


def call_keras_model(model: Any, inputs: Any) -> tuple[np.ndarray, ...]:
    """Run a live Keras 3 or tf_keras model in inference mode; outputs as numpy arrays.

    One input is given as the model declares it, bare or in a list (``Model(inputs=[x])``):
    Keras warns on every call where the structure differs.
    """
    listed = len(inputs) > 1 or isinstance(_declared_input(model), (list, tuple))
    outputs = model(list(inputs) if listed else inputs[0], training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return tuple(
        np.asarray(output.numpy() if hasattr(output, "numpy") else output) for output in outputs
    )


def _declared_input(model: Any) -> Any:
    """``model.input``, the structure its inputs were declared with; None for a model never
    built (a subclassed model before its first call)."""
    try:
        return model.input
    except (AttributeError, ValueError):
        return None


def port_live_model(model: Any, *, verify: bool, seed: int) -> Any:
    """Port a live whole Keras model, checked against the model's own call."""
    from ..adapters.keras import compute_dtype
    from .live import graph_from_keras

    keras_dtype = compute_dtype(model)
    module = port_graph(
        graph_from_keras(model),
        verify=verify,
        seed=seed,
        expected=lambda inputs: call_keras_model(model, inputs),
        compute_dtype=keras_dtype,
        label=f"Keras {type(model).__name__} {model.name!r} (computes in {keras_dtype}) "
        "vs its torch port",
    )
    describe_port(module, keras_dtype, "the Keras model's own call" if verify else None)
    return module


__all__ = [
    "call_keras_model",
    "describe_port",
    "port_file",
    "port_graph",
    "port_live_model",
]
