"""Seeded inputs for a whole model's graph, whose inputs are not a recurrent stack's.

A CRNN takes an image (B, C, H, W), a tagger token ids (B, T), a voice-activity model
features (B, C, T) with a dynamic time axis: none is the (sequence, states, lengths) that
:func:`~.example_inputs.seeded_graph_inputs` reads by role, which falls back on
:func:`whole_model_inputs` for them. Fixed dimensions keep their sizes; a dynamic one is
the batch where it stands first (or shares its name with a first dimension), else the
time. Float inputs are standard normal; an integer input read as ``Gather`` indices from a
constant table (an embedding) holds valid indices into it, any other integer input valid
lengths (1..T, the first row full). onnx is imported inside the functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._imports import require
from ...errors import UnsupportedFeatureError
from .nodes import constant_values


def whole_model_inputs(
    proto: Any, *, seed: int, batch: int, steps: int
) -> tuple[tuple[str, ...], tuple[np.ndarray, ...]]:
    """The names and seeded values of every graph input that is not an initializer.

    Raises:
        UnsupportedFeatureError: an input without a declared tensor shape, or of a type
            other than float or integer.

    Example:
        >>> import onnx
        >>> from onnx import TensorProto, helper
        >>> table = onnx.numpy_helper.from_array(np.zeros((10, 4), np.float32), "table")
        >>> graph = helper.make_graph(
        ...     [helper.make_node("Gather", ["table", "tokens"], ["y"])], "tagger",
        ...     [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "time"])],
        ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [table])
        >>> names, arrays = whole_model_inputs(helper.make_model(graph), seed=0, batch=2,
        ...                                    steps=7)
        >>> names, arrays[0].shape, str(arrays[0].dtype), bool(arrays[0].max() < 10)
        (('tokens',), (2, 7), 'int64', True)
    """
    onnx = require("onnx")
    initializers = {i.name for i in proto.graph.initializer}
    declared = [i for i in proto.graph.input if i.name not in initializers]
    first_dims = {_dims(i)[0] for i in declared if _dims(i)}
    bounds = _index_bounds(proto)
    rng = np.random.default_rng(seed)
    arrays = []
    for value_info in declared:
        dtype = np.dtype(
            onnx.helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type)
        )
        shape = tuple(
            dim if isinstance(dim, int) else batch if dim in first_dims else steps
            for dim in _dims(value_info)
        )
        if dtype.kind == "f":
            arrays.append(rng.standard_normal(shape).astype(dtype))
        elif dtype.kind in "iu" and value_info.name in bounds:
            arrays.append(rng.integers(0, bounds[value_info.name], shape).astype(dtype))
        elif dtype.kind in "iu":
            valid = rng.integers(1, steps + 1, shape)
            valid.flat[:1] = steps  # one full row: every step is used somewhere
            arrays.append(valid.astype(dtype))
        else:
            raise UnsupportedFeatureError(
                f"graph input {value_info.name!r} is {dtype}; example inputs are built for "
                "float and integer inputs only"
            )
    return tuple(i.name for i in declared), tuple(arrays)


def declared_tensor_type(value_info: Any) -> Any:
    """A graph input's tensor type; refused where it declares no tensor shape."""
    tensor_type = value_info.type.tensor_type
    if not value_info.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
        raise UnsupportedFeatureError(
            f"graph input {value_info.name!r} declares no tensor shape, so no example "
            "input can be built for it; declare its shape in the graph"
        )
    return tensor_type


def _dims(value_info: Any) -> tuple[int | str | tuple[str, int], ...]:
    """Each dimension's fixed size, else its name, else its place (shared with none)."""
    tensor_type = declared_tensor_type(value_info)
    return tuple(
        dim.dim_value if dim.dim_value > 0 else dim.dim_param or (value_info.name, axis)
        for axis, dim in enumerate(tensor_type.shape.dim)
    )


def _index_bounds(proto: Any) -> dict[str, int]:
    """Graph inputs used as ``Gather`` indices into a constant table: the size of the axis
    they index (the smallest, where several tables read one input)."""
    constants = constant_values(proto)
    bounds: dict[str, int] = {}
    for node in proto.graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[0] in constants:
            table = constants[node.input[0]]
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            size = int(table.shape[axis])
            bounds[node.input[1]] = min(size, bounds.get(node.input[1], size))
    return bounds
