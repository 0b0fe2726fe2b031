"""``TimeDistributed`` over any layer: the wrapped layer as a one-layer model graph.

Every runner (the reference, the torch port, the ONNX export) applies the wrapped layer the
same way: the batch and time axes merged into one, the inner layer run as its own model on
(B·T, ...), and the result split back into (B, T, ...). The wrapper passes its input's mask
on, as Keras's does; a wrapped layer that would read the mask of each step is refused under
a mask, since Keras hands it a per-step mask of another shape.
"""

from __future__ import annotations

from .errors import UnsupportedFeatureError
from .graph import LayerRecord, ModelGraph

# Kinds whose computation reads a mask: under a mask, Keras gives each step's slice of it.
MASK_READERS = ("recurrent", "global_pool", "softmax", "time_distributed")


def inner_graph(record: LayerRecord, rank: int) -> ModelGraph:
    """The wrapped layer of ``record`` as a model reading one (B·T, ...) input of ``rank``.

    Example:
        >>> inner = LayerRecord("flat", "flatten", "Flatten", ("x",))
        >>> wrapper = LayerRecord("td", "time_distributed", "TimeDistributed", ("x",),
        ...                       {"layer": inner})
        >>> [r.name for r in inner_graph(wrapper, 4).layers]
        ['x', 'flat']
    """
    inner: LayerRecord = record.options["layer"]
    (source,) = inner.inputs
    shape = (None,) * (rank - 2)  # the time axis is merged into the batch
    reads_ids = inner.kind == "embedding"
    options = {"shape": shape, "dtype": "int64" if reads_ids else "float32"}
    step_input = LayerRecord(source, "input", "InputLayer", options=options)
    return ModelGraph(record.name, (step_input, inner), (source,), (inner.name,))


def check_time_distributed(record: LayerRecord, masked: bool) -> None:
    """Refuse a wrapped layer that would read each step's mask.

    Example:
        >>> inner = LayerRecord("flat", "flatten", "Flatten", ("x",))
        >>> check_time_distributed(LayerRecord("td", "time_distributed", "TimeDistributed",
        ...                                    ("x",), {"layer": inner}), True)
    """
    inner: LayerRecord = record.options["layer"]
    if masked and inner.kind in MASK_READERS:
        raise UnsupportedFeatureError(
            f"layer {record.name!r} (TimeDistributed({inner.class_name})) reads a mask; Keras "
            "passes each step's slice of it to the wrapped layer, which no port reproduces; "
            "remove the mask before this layer or wrap a layer that does not read masks"
        )


__all__ = ["MASK_READERS", "check_time_distributed", "inner_graph"]
