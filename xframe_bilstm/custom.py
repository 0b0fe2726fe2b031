"""Custom layers: the user's own classes, ported by factories the user passes by class name.

Rules of this module:

- Nothing is imported from a file. A custom Keras class in a model is ported only where the
  user maps its class name to a factory (``keras_to_torch(path, custom_layers={"SqueezeLayer":
  factory})``), like Keras's ``custom_objects``; a torch child only where the user maps its
  class (``torch_to_keras(module, custom_modules={Scale: factory})``).
- The mapping in use is held by :func:`custom_layers_in_use` while a model is read, so the
  readers (:mod:`xframe_bilstm.keras_files.config`) know which unknown classes are mapped.
  What they make holds its factories: a record of kind ``"custom"`` builds itself.
- A custom record's options: ``config`` (the layer's Keras configuration, ``{}`` for a torch
  child), ``registered_name`` (Keras's ``package>Name``, or None), ``build_torch`` (no
  arguments, returns the torch module) and ``build_keras`` (no arguments, returns the Keras
  layer; None to take the class Keras has registered). Its weights are the layer's, named
  ``"0"``, ``"1"``... in the order the file stores them.
- The float64 reference and the ONNX export cannot run a user's code: they say so naming the
  class (:func:`custom_refusal`).

The Keras → torch factory takes ``(config, weights)``: the layer's configuration (a dict,
as ``get_config()`` returns it) and its weights as numpy arrays in the order the layer
created them (``layer.get_weights()``); it returns an ``nn.Module`` that takes and returns
tensors in the Keras layout (batch first, channels last). The torch → Keras factory takes
the torch child and returns a Keras layer computing what it computes, weights included.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

CustomFactories = Mapping[Any, Callable[..., Any]]

_IN_USE: ContextVar[CustomFactories | None] = ContextVar("custom_layers", default=None)


def custom_hint(class_names: Iterable[str] = ("ClassName",)) -> str:
    """How to map custom classes to factories, shown with the classes a refusal names.

    Example:
        >>> custom_hint(["SqueezeLayer"])[:60]
        'map each class of your own to a factory: keras_to_torch(path'
    """
    mapping = ", ".join(f"{name!r}: factory" for name in dict.fromkeys(class_names))
    return (
        f"map each class of your own to a factory: keras_to_torch(path, custom_layers={{"
        f"{mapping}}}), where factory(config, weights) returns a torch module computing the "
        "layer in the Keras layout (channels last)"
    )


@contextlib.contextmanager
def custom_layers_in_use(factories: CustomFactories | None) -> Iterator[None]:
    """Within: the readers port the classes of ``factories`` as custom layers.

    Example:
        >>> with custom_layers_in_use({"SqueezeLayer": lambda config, weights: None}):
        ...     custom_factory("chords>SqueezeLayer") is not None
        True
        >>> custom_factory("SqueezeLayer") is None
        True
    """
    token = _IN_USE.set(dict(factories or {}))
    try:
        yield
    finally:
        _IN_USE.reset(token)


def custom_factory(class_name: str, registered_name: str | None = None) -> Callable | None:
    """The factory mapped to a class, by its name or Keras's registered ``package>Name``."""
    factories = _IN_USE.get() or {}
    for name in (registered_name, class_name):
        if not name:
            continue
        for key in (name, name.split(">")[-1]):
            if key in factories:
                return factories[key]
    return None


def is_custom_class(class_name: str) -> bool:
    """Whether ``class_name`` is mapped to a factory in the mapping in use."""
    return custom_factory(class_name) is not None


def custom_refusal(record: Any, what: str) -> str:
    """``layer 'name' (Class) is a custom layer, which <what> cannot run: ...``."""
    return (
        f"layer {record.name!r} ({record.class_name}) is a custom layer, which {what} cannot "
        "run: its computation is the class's own code, not a Keras layer this library knows"
    )


__all__ = [
    "CustomFactories",
    "custom_factory",
    "custom_hint",
    "custom_layers_in_use",
    "custom_refusal",
    "is_custom_class",
]
