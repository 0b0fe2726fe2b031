"""The graph inputs of a whole-model export (:mod:`.graph_export`): one per model input,
named after it, with batch and time dynamic and the element type that its readers take.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...graph import ModelGraph


def graph_inputs(onnx: Any, graph: ModelGraph, float_type: int) -> list[Any]:
    """The value info of each of ``graph``'s inputs, in order; ``float_type`` is the
    graph's float element type."""
    inputs = []
    for index, name in enumerate(graph.inputs):
        shape = graph.layer(name).options["shape"]
        # Inputs after the first may run for other lengths (an attention's query and value).
        time = "time" if index == 0 else f"{name}_time"
        dims = ["batch", *(time if i == 0 and s is None else s for i, s in enumerate(shape))]
        if graph.time_major(name):  # (time, batch, ...)
            dims[:2] = dims[1::-1]
        kind = input_type(onnx, graph, name, float_type)
        inputs.append(onnx.helper.make_tensor_value_info(name, kind, dims))
    return inputs


def input_type(onnx: Any, graph: ModelGraph, name: str, float_type: int) -> int:
    """The ONNX element type of graph input ``name``.

    Token ids an ``Embedding`` reads are int64, whatever their declared type (``Gather``
    indices, compared with an int64 zero for ``mask_zero``); any other input declared as
    integers keeps its type, as a model's runs feed it (lengths, ids read only for their
    number of steps); the rows' lengths (``holds_lengths``) are int64 where they declare no
    integer type; the rest are floats.

    Example:
        >>> import onnx
        >>> from xframe_bilstm.graph import LayerRecord
        >>> graph = ModelGraph("m", (LayerRecord("n", "input", "InputLayer",
        ...     options={"shape": (), "dtype": "int32"}),), ("n",), ("n",))
        >>> input_type(onnx, graph, "n", onnx.TensorProto.FLOAT) == onnx.TensorProto.INT32
        True
    """
    int64 = int(onnx.TensorProto.INT64)
    if any(r.kind == "embedding" and name in r.inputs for r in graph.layers):
        return int64
    declared = _integer_dtype(graph.layer(name).options.get("dtype"))
    if declared is not None:
        return int(onnx.helper.np_dtype_to_tensor_dtype(declared))
    return int64 if graph.holds_lengths(name) else float_type


def _integer_dtype(declared: Any) -> np.dtype | None:
    """``declared`` as a numpy integer dtype, or None for a float or unknown one (a
    ``bfloat16`` numpy does not know without ``ml_dtypes``)."""
    if declared is None:
        return None
    try:
        dtype = np.dtype(declared)
    except TypeError:
        return None
    return dtype if dtype.kind in "iu" else None


__all__ = ["graph_inputs", "input_type"]
