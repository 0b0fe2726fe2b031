"""Which torch modules hold a normalization layer's weights, and under which names.

Keras ``BatchNormalization`` (``gamma``, ``beta``, ``moving_mean``, ``moving_variance``)
and ``LayerNormalization``/``GroupNormalization`` (``gamma``, ``beta``) keep their weights
as torch's ``BatchNorm``/``LayerNorm``/``GroupNorm`` do (``weight``, ``bias``,
``running_mean``, ``running_var``), and as the port's modules do under the same names, so
a diagnosis pairs them by kind.
"""

from __future__ import annotations

from typing import Any

# kind -> (Keras weight, torch attribute, transposed)
WEIGHT_PAIRS = {
    "batch_norm": [
        ("gamma", "weight", False),
        ("beta", "bias", False),
        ("moving_mean", "running_mean", False),
        ("moving_variance", "running_var", False),
    ],
    "layer_norm": [("gamma", "weight", False), ("beta", "bias", False)],
    "group_norm": [("gamma", "weight", False), ("beta", "bias", False)],
}


def weight_modules(nn: Any) -> dict[str, tuple[type, ...]]:
    """The torch module types that hold each normalization kind's weights."""
    from ..models.torch_normpool import BatchNorm, GroupNorm, LayerNorm

    return {
        "batch_norm": (BatchNorm, nn.BatchNorm1d, nn.BatchNorm2d),
        "layer_norm": (LayerNorm, nn.LayerNorm),
        "group_norm": (GroupNorm, nn.GroupNorm),
    }


__all__ = ["WEIGHT_PAIRS", "weight_modules"]
