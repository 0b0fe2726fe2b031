"""Custom layers in a torch port: the user's factory builds the module, checked by running.

Rules of this module:

- A record of kind ``"custom"`` holds how to build its torch module
  (:mod:`xframe_bilstm.custom`); what the factory raises or returns instead of an
  ``nn.Module`` is refused naming the layer.
- The float64 reference cannot run a user's class, so the rounding a port of a model with
  custom layers may show is measured on the port itself (or on the original torch module):
  the same module run in float64 and in float32 on the same inputs
  (:func:`module_noise`). A port that computes something else differs from its original
  by far more than that, whatever the precision.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..comparison import Noise, compare_outputs, dtype_epsilon
from ..errors import ToleranceExceededError, UnsupportedFeatureError
from ..graph import LayerRecord, ModelGraph


def custom_module(record: LayerRecord) -> nn.Module:
    """The torch module the user's factory builds for a custom layer.

    Example:
        >>> from xframe_bilstm.graph import LayerRecord
        >>> record = LayerRecord("squeeze", "custom", "SqueezeLayer", ("x",),
        ...     {"config": {}, "registered_name": None, "build_keras": None,
        ...      "build_torch": lambda: "not a module"})
        >>> custom_module(record)
        Traceback (most recent call last):
        ...
        xframe_bilstm.errors.UnsupportedFeatureError: layer 'squeeze' (SqueezeLayer): its \
factory returned a str, not a torch.nn.Module
    """
    where = f"layer {record.name!r} ({record.class_name})"
    try:
        module = record.options["build_torch"]()
    except Exception as error:  # the user's factory
        raise UnsupportedFeatureError(
            f"{where}: its factory raised {type(error).__name__}: {error}"
        ) from error
    if not isinstance(module, nn.Module):
        raise UnsupportedFeatureError(
            f"{where}: its factory returned a {type(module).__name__}, not a torch.nn.Module"
        )
    return module


def has_custom(graph: Any) -> bool:
    """Whether a model graph holds a custom layer (so no float64 reference can run it)."""
    return isinstance(graph, ModelGraph) and any(r.kind == "custom" for r in graph.layers)


def module_noise(module: nn.Module, inputs: Sequence[np.ndarray]) -> Noise:
    """How far float32 rounding moves ``module``'s outputs: a float64 copy against it."""
    from ..adapters.torch import run_module
    from .torch_forward import sequences_passed_on

    runs = []
    for dtype in (torch.float64, torch.float32):
        copied = copy.deepcopy(module).to(dtype)
        with sequences_passed_on(copied):  # an nn.Sequential runs as torch_to_keras reads it
            runs.append(run_module(copied, inputs))
    exact, rounded = runs
    with np.errstate(invalid="ignore"):
        drift = max(float(np.nanmax(np.abs(r - e), initial=0.0)) for r, e in zip(rounded, exact))
        scale = max(max(float(np.nanmax(np.abs(e), initial=0.0)) for e in exact), 1.0)
    return Noise(drift, scale)


def check_custom_port(
    graph: ModelGraph,
    noisy: nn.Module,
    inputs: Sequence[np.ndarray],
    expected: Sequence[np.ndarray],
    actual: Sequence[np.ndarray],
    *,
    label: str,
    dtype: object = "float32",
) -> None:
    """Raise unless ``actual`` is within the rounding of ``noisy`` (measured) of ``expected``.

    A shape that differs is named with the custom layers, whose factories make the shapes.

    Raises:
        ToleranceExceededError: the outputs differ beyond the rounding.
    """
    label = f"{label} (custom layers {_customs(graph)}: check what their factories build)"
    for name, e, a in zip(graph.outputs, expected, actual):
        if np.shape(e) != np.shape(a):
            raise ToleranceExceededError(
                f"{label}: output {name!r} has shape {np.shape(a)} in the port and "
                f"{np.shape(e)} in the original"
            )
    noise = module_noise(noisy, inputs)
    # Each side may lie its own rounding from the exact values (the original in float32).
    atol = noise.pair_tolerance(dtype_epsilon("float32"), dtype_epsilon(dtype))
    names = list(graph.outputs)[: len(expected)]
    result = compare_outputs(names, expected, actual, atol=atol, label=label)
    if not result:
        raise ToleranceExceededError(result.message())


def run_port(module: nn.Module, graph: ModelGraph, inputs: Sequence[np.ndarray]) -> Any:
    """Run a port holding custom modules; a failure names what each custom module returned.

    Raises:
        ToleranceExceededError: the port could not run (e.g. a custom module returned a
            shape the next layer cannot take), naming the custom layers and their shapes.
    """
    from ..adapters.torch import run_module

    seen: dict[str, str] = {}
    handles = []
    attributes = {step.name: step.attribute for step in getattr(module, "_steps", ())}
    for record in graph.layers:
        child = getattr(module, attributes.get(record.name, record.name), None)
        if record.kind == "custom" and isinstance(child, nn.Module):
            where = f"layer {record.name!r} ({record.class_name})"

            def hook(_: Any, given: Any, result: Any, where: str = where) -> None:
                shapes = [tuple(t.shape) for t in given if isinstance(t, torch.Tensor)]
                out = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result)
                seen[where] = f"{where} returned {out} for an input of shape {shapes[0]}"

            handles.append(child.register_forward_hook(hook))
    try:
        return run_module(module, inputs)
    except Exception as error:  # the user's module, or what it feeds
        shown = "; ".join(seen.values()) or f"custom layers {_customs(graph)} did not run"
        raise ToleranceExceededError(
            f"{graph.source}: its torch port could not run ({type(error).__name__}: "
            f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}): {shown}. "
            "A custom layer's module takes and returns what the Keras layer does, in the "
            "Keras layout (channels last)"
        ) from error
    finally:
        for handle in handles:
            handle.remove()


def _customs(graph: ModelGraph) -> str:
    return ", ".join(f"{r.name!r} ({r.class_name})" for r in graph.layers if r.kind == "custom")


__all__ = [
    "check_custom_port",
    "custom_module",
    "has_custom",
    "module_noise",
    "run_port",
]
