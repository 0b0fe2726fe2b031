"""What the memory tests of the conversions to Keras share: the arrays a graph read from a
torch module holds, and how many of them outlive Keras's build of it."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import numpy as np
import pytest

from xframe_bilstm.adapters.keras import graph as keras_graph
from xframe_bilstm.graph import LayerRecord


def record_arrays(record: LayerRecord) -> list[np.ndarray]:
    """Every weight array ``record`` holds, a recurrent layer's included."""
    arrays = list(record.weights.values())
    if record.recurrent is not None:
        for weights in record.recurrent.weights:
            arrays += [weights.kernel, weights.recurrent_kernel]
            arrays += [] if weights.bias is None else [weights.bias]
    return arrays


def alive_after_keras_build(
    monkeypatch: pytest.MonkeyPatch, read: list[weakref.ref[np.ndarray]]
) -> list[int]:
    """A list that gets, once each time a graph is built in Keras, how many of the arrays
    ``read`` refers to are still alive right after the build."""
    alive: list[int] = []
    build = keras_graph.graph_to_keras

    def building(graph: Any, **options: Any) -> Any:
        model = build(graph, **options)
        gc.collect()  # the conversion still holds the graph: only its arrays may be gone
        alive.append(sum(ref() is not None for ref in read))
        return model

    monkeypatch.setattr(keras_graph, "graph_to_keras", building)
    return alive
