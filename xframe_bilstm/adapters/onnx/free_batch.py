"""An ONNX graph exported for one batch size, made to run at any, checked row by row.

``torch.onnx.export`` without ``dynamic_axes`` (the default of most tutorials) declares the
example's batch size on the graph's inputs and outputs. The TorchScript exporter computes
every size from the tensors (``Shape`` nodes), so its graph runs at any batch once its
declarations say so. torch's dynamo exporter writes the batch into the graph: recurrent
nodes' initial states of constant zeros of that batch, and ``Reshape`` targets holding it.
:func:`free_batch` makes such a graph's batch dynamic:

- the inputs and outputs whose first axis is the batch declare it dynamic, and the declared
  shapes of the values between them are dropped (onnxruntime would check them);
- a recurrent node's initial state of constant zeros is left out: ONNX's default is zeros;
- a constant of one value, expanded (torch's zeros of the batch's size, expanded to the
  input's batch), is that value once: it expands to every size the same;
- a ``Reshape`` to constant sizes holding the batch takes the input's batch at its place
  (0 where the axis stays, -1 where it moves), found by onnx's shape inference with the
  batch symbolic: the one entry of the batch's size with what comes before the input's
  batch axis before it, and what comes after, after it.

Nothing is taken on trust: at three times the batch, the freed graph's outputs on
onnxruntime must be the original's, run on the same rows one batch at a time (each row of a
batch is computed alone, so they are the same numbers). Where they differ, or the freed
graph does not run, the graph holds its batch in a way not undone here and :func:`free_batch`
gives None. onnx, onnxruntime are imported inside the functions.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any

import numpy as np

from ..._imports import require
from .nodes import constant_values, declared_dims, node_attributes
from .vocabulary import CELL_BY_OP

_BATCH = "batch"
_STATE_INPUTS = (5, 6)  # initial_h, initial_c of an LSTM/GRU/RNN node
_MATCH = 1e-4  # of the outputs' scale: one batch's kernels against another's


def fixed_batch(proto: Any) -> int | None:
    """The batch size the graph's first input declares, None where it is dynamic."""
    constants = constant_values(proto)
    inputs = [i for i in proto.graph.input if i.name not in constants]
    dims = declared_dims(inputs[0]) if inputs else []
    return dims[0] if dims else None


def free_batch(proto: Any) -> Any | None:
    """``proto`` with its batch dynamic, checked against ``proto`` on onnxruntime; ``proto``
    itself where its batch is dynamic already, None where it cannot be freed or checked
    (no onnxruntime)."""
    batch = fixed_batch(proto)
    if batch is None:
        return proto
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    onnx = require("onnx")
    freed = onnx.ModelProto()
    freed.CopyFrom(proto)
    _declare_free(freed, batch)
    _drop_zero_states(freed)
    _shrink_expanded(freed)
    _free_reshapes(freed, batch)
    return freed if _same_by_rows(proto, freed, batch) else None


def _declare_free(proto: Any, batch: int) -> None:
    constants = constant_values(proto)
    graph = proto.graph
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if value.name not in constants and len(dims) and dims[0].dim_value == batch:
            dims[0].Clear()
            dims[0].dim_param = _BATCH
    del graph.value_info[:]


def _drop_zero_states(proto: Any) -> None:
    constants = constant_values(proto)
    for node in proto.graph.node:
        if node.op_type not in CELL_BY_OP:
            continue
        for index in _STATE_INPUTS:
            name = node.input[index] if index < len(node.input) else ""
            if name in constants and not constants[name].any():
                node.input[index] = ""


def _shrink_expanded(proto: Any) -> None:
    onnx = require("onnx")
    constants = constant_values(proto)
    for node in proto.graph.node:
        value = constants.get(node.input[0]) if node.op_type == "Expand" else None
        if value is not None and value.size > 1 and (value == value.flat[0]).all():
            one = value.reshape(-1)[:1].reshape((1,) * value.ndim)
            node.input[0] = _add_constant(onnx, proto, node.input[0], one)


def _free_reshapes(proto: Any, batch: int) -> None:
    """Each constant ``Reshape`` target holding the batch, freed there (see the module)."""
    onnx = require("onnx")
    for _ in range(sum(node.op_type == "Reshape" for node in proto.graph.node)):
        shapes = _inferred_shapes(onnx, proto)
        constants = constant_values(proto)
        changed = False
        for node in proto.graph.node:
            if node.op_type != "Reshape" or node.input[1] not in constants:
                continue
            copies = not node_attributes(node).get("allowzero", 0)
            target = _freed_target(
                shapes.get(node.input[0]), constants[node.input[1]], batch, copies
            )
            if target is not None:
                node.input[1] = _add_constant(
                    onnx, proto, node.input[1], np.array(target, np.int64)
                )
                changed = True
        if not changed:
            return


def _inferred_shapes(onnx: Any, proto: Any) -> dict[str, list[Any]]:
    inferred = onnx.shape_inference.infer_shapes(proto)
    graph = inferred.graph
    return {
        value.name: [d.dim_param or (d.dim_value if d.HasField("dim_value") else None)
                     for d in value.type.tensor_type.shape.dim]
        for value in [*graph.value_info, *graph.input, *graph.output]
        if value.type.tensor_type.HasField("shape")
    }  # fmt: skip


def _freed_target(
    shape: list[Any] | None, target: np.ndarray, batch: int, copies: bool = True
) -> list[int] | None:
    """``target`` with the batch of an input of ``shape`` freed: 0 (a copy of the input's
    size, which shape inference follows) where it stays on its axis and ``copies`` (the
    node's ``allowzero`` is 0), else -1. None where the input has no symbolic batch axis,
    or no one entry of ``target`` is its place.

    Example:
        >>> _freed_target([10, "batch", 2, 32], np.array([10, 1, 64]), 1)
        [10, 0, 64]
        >>> _freed_target([1, "batch", 16], np.array([1, 16]), 1)  # h_n of one direction
        [-1, 16]
    """
    if shape is None or shape.count(_BATCH) != 1:
        return None
    axis = shape.index(_BATCH)
    before, after = shape[:axis], shape[axis + 1 :]
    if not all(isinstance(d, int) for d in [*before, *after]):
        return None
    sizes = [int(s) for s in target]
    if 0 in sizes:  # a size copied from the input: computed from it already
        return None
    if -1 in sizes:  # the inferred entry, computed: the batch's takes -1
        known = math.prod(s for s in sizes if s != -1)
        sizes[sizes.index(-1)] = batch * math.prod(before) * math.prod(after) // known
    places = [
        j
        for j, size in enumerate(sizes)
        if size == batch
        and math.prod(sizes[:j]) == math.prod(before)
        and math.prod(sizes[j + 1 :]) == math.prod(after)
    ]
    if len(places) != 1:
        return None
    (place,) = places
    sizes[place] = 0 if copies and place == axis else -1
    return sizes


def _add_constant(onnx: Any, proto: Any, like: str, value: np.ndarray) -> str:
    name = f"{like}_free_batch"
    proto.graph.initializer.append(onnx.numpy_helper.from_array(value, name))
    return name


def _same_by_rows(proto: Any, freed: Any, batch: int) -> bool:
    """Whether ``freed`` at three times the batch computes what ``proto`` computes on the
    same rows, one batch at a time."""
    ort = require("onnxruntime")
    rows = 3 * batch
    feeds = _seeded_feeds(proto, rows)
    options = ort.SessionOptions()
    options.log_severity_level = 4  # a freed graph failing is an answer, not an error
    try:
        original, session = (
            ort.InferenceSession(
                p.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
            )
            for p in (proto, freed)
        )
        chunks = [
            original.run(None, {k: v[i : i + batch] for k, v in feeds.items()})
            for i in range(0, rows, batch)
        ]
        outputs = session.run(None, feeds)
    except Exception:  # onnxruntime's own failure, whatever it is: not freed
        return False
    return all(
        _matches(output, [chunk[at] for chunk in chunks], batch, rows)
        for at, output in enumerate(outputs)
    )


def _matches(output: Any, pieces: list[Any], batch: int, rows: int) -> bool:
    """Whether ``output`` is ``pieces`` joined on the axis that grew from ``batch`` to
    ``rows`` (the batch axis, wherever the output has it)."""
    output, pieces = np.asarray(output), [np.asarray(p) for p in pieces]
    axes = [
        a
        for a in range(output.ndim)
        if output.shape[a] == rows
        and pieces[0].shape[a] == batch
        and output.shape[:a] + output.shape[a + 1 :]
        == pieces[0].shape[:a] + pieces[0].shape[a + 1 :]
    ]
    if not axes:
        return False
    joined = np.concatenate(pieces, axes[0]).astype(np.float64)
    scale = max(1.0, float(np.max(np.abs(joined), initial=0.0)))
    return bool(np.max(np.abs(output - joined), initial=0.0) <= _MATCH * scale)


def _seeded_feeds(proto: Any, rows: int) -> dict[str, np.ndarray]:
    """Seeded inputs of ``rows`` rows: normal floats; integers of one value per row hold
    the full length of the first input's time axis (lengths), others 0 or 1 (ids any
    embedding takes)."""
    onnx = require("onnx")
    rng = np.random.default_rng(0)
    constants = constant_values(proto)
    inputs = [i for i in proto.graph.input if i.name not in constants]
    time = (declared_dims(inputs[0])[1:2] or [1])[0] or 1
    feeds = {}
    for value in inputs:
        shape = (rows, *(d or 1 for d in declared_dims(value)[1:]))
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        if dtype.kind in "iu" and len(shape) == 1:
            feeds[value.name] = np.full(shape, time, dtype)
        elif dtype.kind in "iu":
            feeds[value.name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


__all__ = ["fixed_batch", "free_batch"]
