"""The tensors a layer's call reads, as a configuration writes them (Keras 2 and 3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# (layer, node index, tensor index): one output of one call of a layer.
Ref = tuple[str, int, int]


def tensor_refs(value: Any) -> list[Ref]:
    """Every tensor a Keras 3 call argument refers to.

    Example:
        >>> tensor_refs({"class_name": "__keras_tensor__",
        ...              "config": {"keras_history": ["lstm", 0, 1]}})
        [('lstm', 0, 1)]
    """
    if isinstance(value, Mapping):
        if value.get("class_name") == "__keras_tensor__":
            history = value["config"]["keras_history"]
            return [(str(history[0]), int(history[1]), int(history[2]))]
        return [ref for item in value.values() for ref in tensor_refs(item)]
    if isinstance(value, (list, tuple)):
        return [ref for item in value for ref in tensor_refs(item)]
    return []


def is_keras2_ref(value: Any) -> bool:
    """Whether ``value`` is a Keras 2 tensor reference ``[layer, node, tensor, ...]``."""
    return (
        isinstance(value, (list, tuple))
        and len(value) >= 3
        and isinstance(value[0], str)
        and all(isinstance(index, int) and not isinstance(index, bool) for index in value[1:3])
    )


def keras2_refs(value: Any) -> list[Ref]:
    """Every Keras 2 tensor reference nested in a call's keyword arguments.

    Example:
        >>> keras2_refs({"initial_state": [["enc", 0, 1], ["enc", 0, 2]]})
        [('enc', 0, 1), ('enc', 0, 2)]
    """
    if is_keras2_ref(value):
        return [(str(value[0]), int(value[1]), int(value[2]))]
    if isinstance(value, Mapping):
        return [ref for item in value.values() for ref in keras2_refs(item)]
    if isinstance(value, (list, tuple)):
        return [ref for item in value for ref in keras2_refs(item)]
    return []


__all__ = ["Ref", "is_keras2_ref", "keras2_refs", "tensor_refs"]
