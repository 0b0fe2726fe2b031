"""A layer called on several inputs (the branches of a siamese model): the records of its
later calls share the layers of its first call, so every port holds them once. A torch
``forward`` calling a module twice and a Keras layer with several inbound nodes are read
so alike."""

from __future__ import annotations

from dataclasses import replace

from .graph import LayerRecord, layer_layout


def calling_again(made: list[LayerRecord], first: list[LayerRecord]) -> list[LayerRecord]:
    """A module's records at a later call (``first``: those of its first call), each one
    holding weights sharing the layer the first call made in its place (the same arrays),
    where the two calls read alike; as read where they do not (another layout or states).

    Example:
        >>> import numpy as np
        >>> dense = LayerRecord("fc", "dense", "Dense", ("a",),
        ...                     {"activation": "linear", "time_distributed": False},
        ...                     {"kernel": np.ones((2, 1))})
        >>> again = replace(dense, name="fc_1", inputs=("b",), weights={"kernel": np.ones((2, 1))})
        >>> (shared,) = calling_again([again], [dense])
        >>> shared.shares, shared.weights["kernel"] is dense.weights["kernel"]
        ('fc', True)
    """
    if made is first:
        return made
    earlier = [record for record in first if _holds_weights(record)]
    later = [record for record in made if _holds_weights(record)]
    if len(earlier) != len(later):
        return made
    shared = {}
    for record, owner in zip(later, earlier):
        sharing = replace(
            record, weights=owner.weights, recurrent=owner.recurrent, shares=owner.name
        )
        if layer_layout(sharing) != layer_layout(owner):
            return made
        shared[record.name] = sharing
    return [shared.get(record.name, record) for record in made]


def _holds_weights(record: LayerRecord) -> bool:
    return bool(record.weights) or record.recurrent is not None


__all__ = ["calling_again"]
