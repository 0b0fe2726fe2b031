"""Which torch modules hold an attention layer's weights, and in which layout.

The port's ``Attention`` keeps Keras's ``scale`` and ``concat_score_weight`` under the same
names. Its ``MultiHeadAttention`` keeps each Keras kernel flattened over the heads and
transposed (``query.weight`` is ``query_kernel`` (D, heads, key_dim) as (heads*key_dim, D)),
as ``nn.Linear`` keeps a weight; :func:`keras_layout` flattens the Keras kernel the same way,
so a diagnosis compares them element by element.
"""

from __future__ import annotations

import numpy as np

# kind -> (Keras weight, torch attribute (dotted), transposed)
WEIGHT_PAIRS = {
    "attention": [
        ("scale", "scale", False),
        ("concat_score_weight", "concat_score_weight", False),
    ],
    "multi_head_attention": [
        (f"{name}_{part}", f"{name}.{attribute}", part == "kernel")
        for name in ("query", "key", "value", "output")
        for part, attribute in (("kernel", "weight"), ("bias", "bias"))
    ],
}
# The Keras kernels' axes that become a projection's rows (the heads and their dims).
_FLATTEN_FROM = {"query": 1, "key": 1, "value": 1, "output": 2}


def keras_layout(kind: str, name: str, array: np.ndarray) -> np.ndarray:
    """A Keras attention weight as the port holds it before any transpose: multi-head
    kernels and biases flattened over the heads, the rest as they are.

    Example:
        >>> keras_layout("multi_head_attention", "query_kernel", np.zeros((5, 2, 3))).shape
        (5, 6)
        >>> keras_layout("multi_head_attention", "output_kernel", np.zeros((2, 3, 5))).shape
        (6, 5)
    """
    if kind != "multi_head_attention":
        return array
    projection, part = name.rsplit("_", 1)
    if part == "bias":
        return array.reshape(-1)
    start = _FLATTEN_FROM[projection]
    return array.reshape(int(np.prod(array.shape[:start])), -1)


def attention_modules() -> dict[str, tuple[type, ...]]:
    """The port's module types that hold each attention kind's weights."""
    from ..models.torch_attention import Attention, MultiHeadAttention

    return {"attention": (Attention,), "multi_head_attention": (MultiHeadAttention,)}


__all__ = ["WEIGHT_PAIRS", "attention_modules", "keras_layout"]
