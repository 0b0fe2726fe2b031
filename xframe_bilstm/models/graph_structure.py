"""A model graph's structure without its weights, as a torch port keeps it.

A :class:`~xframe_bilstm.models.to_torch.KerasModel` holds its weights in its parameters;
it keeps the graph it was built from so that it can be read back (Keras → torch → Keras),
but only the graph's structure: every weight becomes a placeholder of the same shape and
dtype that takes no memory, and the weights are read from the parameters when asked for
(:mod:`~xframe_bilstm.models.torch_readback`), so a port that was trained or loaded since
converts back with the weights it holds now.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from ..canonical import layer_structure, placeholder
from ..graph import LayerRecord, ModelGraph


def record_structure(record: LayerRecord) -> LayerRecord:
    """``record`` with placeholder weights (a wrapped layer's too).

    A custom layer keeps its weights: its factory (``build_torch``) holds them anyway, and
    builds from them alone.
    """
    if record.kind == "custom":
        return record
    weights: Mapping[str, np.ndarray] = {
        key: placeholder(value) for key, value in record.weights.items()
    }
    recurrent = None if record.recurrent is None else layer_structure(record.recurrent)
    options = record.options
    if isinstance(options.get("layer"), LayerRecord):  # TimeDistributed's wrapped layer
        options = {**options, "layer": record_structure(options["layer"])}
    return dataclasses.replace(record, weights=weights, recurrent=recurrent, options=options)


def release_weights(record: LayerRecord) -> None:
    """Put placeholders in ``record`` for its arrays, in place, once a model holds copies.

    For a record that its conversion read and nobody else holds: the graph's arrays leave
    layer by layer as the new model takes them, so that they and the model's weights are
    never all in memory together (arrays that are views of a module's parameters are only
    let go). The frozen record is changed in place for that reason alone; what is left is
    :func:`record_structure`.
    """
    kept = record_structure(record)
    for field in ("weights", "recurrent", "options"):
        object.__setattr__(record, field, getattr(kept, field))


def graph_structure(graph: ModelGraph) -> ModelGraph:
    """``graph`` with placeholder weights in every layer.

    Example:
        >>> record = LayerRecord("x", "input", "InputLayer",
        ...                      options={"shape": (3,), "dtype": "float32"})
        >>> dense = LayerRecord("d", "dense", "Dense", ("x",),
        ...                     {"activation": "linear", "time_distributed": False},
        ...                     {"kernel": np.ones((3, 2), "float32")})
        >>> kept = graph_structure(ModelGraph("m", (record, dense), ("x",), ("d",)))
        >>> kept.layer("d").weights["kernel"].strides
        (0, 0)
    """
    return dataclasses.replace(graph, layers=tuple(record_structure(r) for r in graph.layers))


__all__ = ["graph_structure", "placeholder", "record_structure", "release_weights"]
