"""Embedding tables quantized to 8 bits, read as the float tables they stand for.

``onnxruntime.quantization`` writes an ``nn.Embedding`` as a ``Gather`` of an int8 (or
uint8) table, its rows moved (``Transpose``, ``Reshape``, ...) and dequantized
(``DequantizeLinear``) where read. Where every such reader dequantizes with the same one
scale and zero point, the graph computes exactly a ``Gather`` of the dequantized table:
:func:`dequantized_tables` rewrites it so (the ``DequantizeLinear`` nodes become
``Identity``), and the float graph holds an ordinary embedding. A table read otherwise
stays as it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._imports import require

_MOVES = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity")


def dequantized_tables(model: Any, constants: dict[str, np.ndarray]) -> None:
    """Rewrite, in place, each ``Gather`` of an 8-bit table dequantized by one scale and
    zero point into a ``Gather`` of the float table (see the module)."""
    onnx = require("onnx")
    graph = model.graph
    for gather in [node for node in graph.node if node.op_type == "Gather"]:
        table = constants.get(gather.input[0])
        if table is None or table.dtype.kind not in "iu" or table.dtype.itemsize != 1:
            continue
        found = _dequantizers(graph, gather.output[0])
        if found is None:
            continue
        dequantizers, moved = found
        pairs = {_scale_and_zero(node, constants) for node in dequantizers}
        if len(pairs) != 1 or None in pairs:
            continue
        ((scale, zero),) = [pair for pair in pairs if pair is not None]
        values = ((table.astype(np.int32) - zero) * np.float32(scale)).astype(np.float32)
        name = f"{gather.input[0]}_dequantized"
        graph.initializer.append(onnx.numpy_helper.from_array(values, name))
        gather.input[0] = name
        for node in dequantizers:
            node.op_type = "Identity"
            del node.input[1:]
            del node.attribute[:]
        for info in graph.value_info:
            if info.name in moved:
                info.type.tensor_type.elem_type = onnx.TensorProto.FLOAT


def _dequantizers(graph: Any, rows: str) -> tuple[list[Any], set[str]] | None:
    """The ``DequantizeLinear`` nodes reading ``rows`` through moves, and the tensors on the
    way; None where another node reads them."""
    found, moved, tensors = [], {rows}, [rows]
    while tensors:
        tensor = tensors.pop()
        for node in graph.node:
            if tensor not in node.input:
                continue
            if node.input[0] != tensor:
                return None
            if node.op_type == "DequantizeLinear":
                found.append(node)
            elif node.op_type in _MOVES:
                moved.add(node.output[0])
                tensors.append(node.output[0])
            else:
                return None
    return (found, moved) if found else None


def _scale_and_zero(node: Any, constants: dict[str, np.ndarray]) -> tuple[float, int] | None:
    """The one scale and zero point ``node`` dequantizes with; None where not constants of
    one value."""
    scale = constants.get(node.input[1])
    zero = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if scale is None or scale.size != 1 or (zero is not None and zero.size != 1):
        return None
    return float(scale.reshape(())), 0 if zero is None else int(zero.reshape(()))


__all__ = ["dequantized_tables"]
