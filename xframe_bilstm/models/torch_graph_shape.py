"""torch activation, softmax, flatten and dropout-like children read as Keras layer records.

Each child is recorded with Keras's meaning of the same computation: ``nn.LeakyReLU`` is a
``LeakyReLU`` layer with torch's slope (Keras's ``leaky_relu`` function has another default),
``nn.Softmax(dim=1)`` a ``Softmax(axis=1)`` layer (both count the batch axis),
``nn.PReLU()`` a ``PReLU`` sharing its one slope over every axis (``nn.PReLU(n)`` slopes
torch's channel axis 1, which a Keras port's channels-last layout does not have: refused).
"""

from __future__ import annotations

from typing import Any

from ..errors import UnsupportedFeatureError
from ..graph import LayerRecord

# torch classes that are one Keras activation function with their default arguments.
_FUNCTIONS = {
    "ReLU6": "relu6",
    "Mish": "mish",
    "Hardswish": "hard_silu",
    "LogSigmoid": "log_sigmoid",
    "Tanhshrink": "tanh_shrink",
}
# torch classes whose arguments must equal Keras's fixed ones: (argument, value) pairs.
_FIXED = {
    "Hardtanh": ("hard_tanh", (("min_val", -1.0), ("max_val", 1.0))),
    "CELU": ("celu", (("alpha", 1.0),)),
    "Softshrink": ("soft_shrink", (("lambd", 0.5),)),
    "Hardshrink": ("hard_shrink", (("lambd", 0.5),)),
}
SHAPE_CHILDREN = frozenset(
    {*_FUNCTIONS, *_FIXED, "GELU", "LeakyReLU", "ELU", "PReLU", "Softmax", "LogSoftmax"}
    | {"Flatten", "AlphaDropout", "FeatureAlphaDropout", "Dropout1d", "Dropout2d"}
)


def _activation(name: str, kind: str, previous: str, activation: str) -> list[LayerRecord]:
    return [LayerRecord(name, "activation", kind, (previous,), {"activation": activation})]


def shape_child_records(name: str, child: Any, previous: str) -> list[LayerRecord]:
    """The records of a child whose class is in :data:`SHAPE_CHILDREN`.

    Example:
        >>> import torch
        >>> [r.options for r in shape_child_records("act", torch.nn.GELU("tanh"), "x")]
        [{'activation': 'gelu_tanh'}]
    """
    kind = type(child).__name__
    if kind in _FUNCTIONS:
        return _activation(name, kind, previous, _FUNCTIONS[kind])
    if kind in _FIXED:
        activation, fixed = _FIXED[kind]
        changed = [
            f"{key}={getattr(child, key)}" for key, value in fixed if getattr(child, key) != value
        ]
        if changed:
            raise UnsupportedFeatureError(
                f"child {name!r} is {kind}({', '.join(changed)}); Keras's {activation} has "
                f"{', '.join(f'{key}={value}' for key, value in fixed)}"
            )
        return _activation(name, kind, previous, activation)
    if kind == "GELU":
        return _activation(
            name, kind, previous, "gelu_tanh" if child.approximate == "tanh" else "gelu"
        )
    if kind in ("Softmax", "LogSoftmax"):
        dim = -1 if child.dim is None else int(child.dim)
        log = kind == "LogSoftmax"
        if dim == -1:
            return _activation(name, kind, previous, "log_softmax" if log else "softmax")
        return [LayerRecord(name, "softmax", kind, (previous,), {"axis": dim, "log": log})]
    if kind == "LeakyReLU":
        options = {
            "max_value": None,
            "negative_slope": float(child.negative_slope),
            "threshold": 0.0,
        }
        return [LayerRecord(name, "relu", kind, (previous,), options)]
    if kind == "ELU":
        if child.alpha == 1.0:
            return _activation(name, kind, previous, "elu")
        return [LayerRecord(name, "elu", kind, (previous,), {"alpha": float(child.alpha)})]
    if kind == "PReLU":
        return [_prelu(name, child, previous)]
    if kind == "Flatten":
        if child.start_dim != 1 or child.end_dim != -1:
            raise UnsupportedFeatureError(
                f"child {name!r} is Flatten(start_dim={child.start_dim}, end_dim="
                f"{child.end_dim}); Keras's Flatten keeps the batch axis and flattens the rest "
                "(start_dim=1, end_dim=-1)"
            )
        return [LayerRecord(name, "flatten", kind, (previous,))]
    return [LayerRecord(name, "identity", kind, (previous,))]  # dropouts: none at inference


def _prelu(name: str, child: Any, previous: str) -> LayerRecord:
    from ..adapters.torch import tensor_to_numpy

    if child.num_parameters != 1:
        raise UnsupportedFeatureError(
            f"child {name!r} is PReLU(num_parameters={child.num_parameters}), one slope per "
            "channel of torch's axis 1; a channels-last Keras PReLU slopes other axes; use "
            "PReLU() (one shared slope)"
        )
    alpha = tensor_to_numpy(child.weight.detach())
    return LayerRecord(name, "prelu", "PReLU", (previous,), {"shared_axes": ()}, {"alpha": alpha})


__all__ = ["SHAPE_CHILDREN", "shape_child_records"]
