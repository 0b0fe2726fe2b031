"""An ONNX graph exported for one batch size, made to run at any, checked row by row.

``torch.onnx.export`` without ``dynamic_axes`` (the default of most tutorials) declares the
example's batch size on the graph's inputs and outputs. The TorchScript exporter computes
most sizes from the tensors (``Shape`` nodes), so its graph mostly runs at any batch once
its declarations say so; torch's dynamo exporter writes the batch into the graph: recurrent
nodes' initial states of constant zeros of that batch, and ``Reshape`` targets holding it;
both fold a learned initial state expanded to the batch, and the inverse of a sort of the
rows, into constants. :func:`free_batch` makes such a graph's batch dynamic:

- the inputs and outputs whose first axis is the batch declare it dynamic, and the declared
  shapes of the values between them are dropped (onnxruntime would check them);
- a recurrent node's initial state computed from constants alone is left out where zeros
  (ONNX's default), and expanded from one row to the input's batch where all its rows are
  the same (learned initial states);
- a constant of one value, expanded (torch's zeros of the batch's size, expanded to the
  input's batch), is that value once: it expands to every size the same;
- the inverse of a sort of the rows (a ``ScatterElements`` of the constant positions
  ``0 .. B-1`` into constant zeros) is made at the size of its indices;
- a ``Reshape`` to constant sizes holding the batch takes -1 there (the input's batch at
  run time), found by onnx's shape inference with the batch symbolic: reshaping keeps the
  elements' order, so the entry holding the batch is the one whose span of strides holds
  the batch index's stride (merged with time, (T * B, C), and split back too).

Nothing is taken on trust: at three times the batch, the freed graph's outputs on
onnxruntime must be the original's, run on the same rows one batch at a time (each row of a
batch is computed alone, so they are the same numbers). Where they differ, or the freed
graph does not run, the graph holds its batch in a way not undone here and :func:`free_batch`
gives None. onnx, onnxruntime are imported inside the functions.
"""

from __future__ import annotations

import importlib.util
import math
import re
from typing import Any

import numpy as np

from ..._imports import require
from .nodes import constant_values, data_inputs, declared_dims, default_opset, node_attributes
from .static_values import folded_constants
from .vocabulary import CELL_BY_OP

_BATCH = "batch"
_SYMBOL = re.compile(rf"{_BATCH}(?:_x(\d+)_s(\d+))?")
_STATE_INPUTS = (5, 6)  # initial_h, initial_c of an LSTM/GRU/RNN node
_MATCH = 1e-4  # of the outputs' scale: one batch's kernels against another's


def fixed_batch(proto: Any) -> int | None:
    """The batch size the graph's first input declares, None where it is dynamic."""
    inputs = data_inputs(proto)
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
    _free_states(freed)
    _shrink_expanded(freed)
    _free_row_orders(freed, batch)
    _free_reshapes(freed, batch)
    return freed if _same_by_rows(proto, freed, batch) else None


def _declare_free(proto: Any, batch: int) -> None:
    graph = proto.graph
    for value in [*data_inputs(proto), *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims) and dims[0].dim_value == batch:
            dims[0].Clear()
            dims[0].dim_param = _BATCH
    del graph.value_info[:]


def _free_states(proto: Any) -> None:
    """A recurrent node's constant initial states: left out where zeros (ONNX's default);
    expanded to the input's batch from one row where every row is the same (learned
    states, ``h0.expand(-1, B, -1)`` folded at the export's batch)."""
    onnx = require("onnx")
    constants = _computed_constants(proto)
    nodes = []
    for node in proto.graph.node:
        for index in _STATE_INPUTS if node.op_type in CELL_BY_OP else ():
            name = node.input[index] if index < len(node.input) else ""
            value = constants.get(name)
            if value is None or value.ndim != 3:
                continue
            axis = 0 if node_attributes(node).get("layout", 0) else 1  # of the states and X
            if not value.any():
                node.input[index] = ""
            elif (value == value.take([0], axis)).all():
                nodes += _expanded(onnx, proto, node, index, value.take([0], axis), axis)
        nodes.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)


def _computed_constants(proto: Any) -> dict[str, np.ndarray]:
    """The graph's constants, and the values its nodes compute from constants alone (on
    onnx's reference implementation): TorchScript writes ``h0.expand(-1, B, -1)`` of an
    export's batch as a ``Where`` of constants giving the ``Expand`` its target."""
    return folded_constants(proto.graph, constant_values(proto), default_opset(proto), ops=None)


def _expanded(onnx: Any, proto: Any, node: Any, index: int, row: np.ndarray, axis: int) -> list:
    """Nodes expanding ``row`` to ``node``'s input's batch (its ``axis``), as its input
    ``index``, which they replace."""
    helper, name = onnx.helper, f"{node.input[index]}_free_batch"
    parts = [
        f"{name}_batch"
        if k == axis
        else _add_constant(onnx, proto, f"{name}_{k}", np.array([size], np.int64))
        for k, size in enumerate(row.shape)
    ]
    at = _add_constant(onnx, proto, f"{name}_axis", np.array([axis], np.int64))
    made = [
        helper.make_node("Shape", [node.input[0]], [f"{name}_input_shape"]),
        helper.make_node("Gather", [f"{name}_input_shape", at], [parts[axis]]),
        helper.make_node("Concat", parts, [f"{name}_shape"], axis=0),
        helper.make_node(
            "Expand", [_add_constant(onnx, proto, f"{name}_row", row), f"{name}_shape"], [name]
        ),
    ]
    node.input[index] = name
    return made


def _free_row_orders(proto: Any, batch: int) -> None:
    """A ``ScatterElements`` into constant zeros of the batch's size of the constant
    positions ``0 .. B-1`` (torch's inverse of a sort of the rows, packed sequences'
    ``enforce_sorted=False``): both made at run time at the size of its indices."""
    onnx = require("onnx")
    helper = onnx.helper
    constants = constant_values(proto)
    nodes = []
    for node in proto.graph.node:
        scatter = node.op_type == "ScatterElements"
        data, _, updates = (constants.get(n) for n in node.input) if scatter else (None,) * 3
        if (
            data is not None
            and updates is not None
            and data.shape == updates.shape == (batch,)
            and data.dtype == updates.dtype
            and not data.any()
            and (updates == np.arange(batch)).all()
        ):
            name = f"{node.output[0]}_free_batch"
            zero, one = (
                _add_constant(onnx, proto, f"{name}_{v}", np.array(v, updates.dtype))
                for v in (0, 1)
            )
            at = _add_constant(onnx, proto, f"{name}_at", np.array(0, np.int64))
            fill = onnx.numpy_helper.from_array(np.zeros(1, data.dtype))
            nodes += [  # as torch writes them where the batch is dynamic
                helper.make_node("Shape", [node.input[1]], [f"{name}_shape"]),
                helper.make_node("Gather", [f"{name}_shape", at], [f"{name}_rows"]),
                helper.make_node(
                    "Cast", [f"{name}_rows"], [f"{name}_size"], to=_elem(onnx, updates)
                ),
                helper.make_node("Range", [zero, f"{name}_size", one], [f"{name}_positions"]),
                helper.make_node(
                    "ConstantOfShape", [f"{name}_shape"], [f"{name}_zeros"], value=fill
                ),
            ]
            node.input[0], node.input[2] = f"{name}_zeros", f"{name}_positions"
        nodes.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)


def _elem(onnx: Any, value: np.ndarray) -> int:
    return int(onnx.helper.np_dtype_to_tensor_dtype(value.dtype))


def _shrink_expanded(proto: Any) -> None:
    onnx = require("onnx")
    constants = constant_values(proto)
    for node in proto.graph.node:
        value = constants.get(node.input[0]) if node.op_type == "Expand" else None
        if value is not None and value.size > 1 and (value == value.flat[0]).all():
            one = value.reshape(-1)[:1].reshape((1,) * value.ndim)
            node.input[0] = _add_constant(onnx, proto, node.input[0], one)


def _free_reshapes(proto: Any, batch: int) -> None:
    """Each constant ``Reshape`` target holding the batch, freed there (see the module); its
    output declared with the batch's symbol, which shape inference carries on."""
    onnx = require("onnx")
    for _ in range(sum(node.op_type == "Reshape" for node in proto.graph.node)):
        values = _inferred_values(onnx, proto)
        constants = constant_values(proto)
        changed = False
        for node in proto.graph.node:
            if node.op_type != "Reshape" or node.input[1] not in constants:
                continue
            elem_type, shape = values.get(node.input[0], (0, None))
            freed = _freed_target(shape, constants[node.input[1]], batch)
            if freed is None:
                continue
            target, symbol = freed
            node.input[1] = _add_constant(onnx, proto, node.input[1], np.array(target, np.int64))
            dims: list[Any] = [symbol if size == -1 else size for size in target]
            info = onnx.helper.make_tensor_value_info(node.output[0], elem_type, dims)
            proto.graph.value_info.append(info)
            changed = True
        if not changed:
            return


def _inferred_values(onnx: Any, proto: Any) -> dict[str, tuple[int, list[Any]]]:
    """Each value's element type and dimensions (a size, a symbol, or None), as onnx's
    shape inference tells them."""
    graph = onnx.shape_inference.infer_shapes(proto).graph
    return {
        value.name: (
            value.type.tensor_type.elem_type,
            [d.dim_param or (d.dim_value if d.HasField("dim_value") else None)
             for d in value.type.tensor_type.shape.dim],
        )
        for value in [*graph.value_info, *graph.input, *graph.output]
        if value.type.tensor_type.HasField("shape")
    }  # fmt: skip


def _batch_axis(shape: list[Any] | None) -> tuple[int, int, int] | None:
    """The one axis of ``shape`` holding the batch (its symbol: ``batch``, or
    ``batch_x{m}_s{s}`` for an axis of ``m`` times the batch's size where the batch index
    steps by ``s``), with ``m`` and ``s``; None where there is none, or other sizes are not
    all known."""
    if shape is None:
        return None
    symbols = [(k, d) for k, d in enumerate(shape) if isinstance(d, str)]
    match = _SYMBOL.fullmatch(symbols[0][1]) if len(symbols) == 1 else None
    if match is None or None in shape:
        return None
    axis = symbols[0][0]
    return (axis, int(match[1]), int(match[2])) if match[1] else (axis, 1, 1)


def _freed_target(
    shape: list[Any] | None, target: np.ndarray, batch: int
) -> tuple[list[int], str] | None:
    """``target`` with the entry holding the batch of an input of ``shape`` made -1 (the
    input's batch at run time), and that entry's symbol; None where the input holds no
    batch, or no one entry of ``target`` holds it.

    Reshaping keeps the elements' order, so the batch index steps by the same stride in the
    flat order before and after: the entry holding it is the one whose span of strides
    holds the batch's (for a batch of 1, an entry of size 1 at its stride first).

    Example:
        >>> _freed_target([10, "batch", 2, 32], np.array([10, 1, 64]), 1)
        ([10, -1, 64], 'batch')
        >>> _freed_target([10, "batch", 64], np.array([40, 64]), 4)  # (T, B) merged
        ([-1, 64], 'batch_x10_s1')
        >>> _freed_target(["batch_x10_s1", 5], np.array([10, 4, -1]), 4)  # and split back
        ([10, -1, 5], 'batch')
        >>> _freed_target(["batch", 20, 12], np.array([20, 12]), 1)  # (1, T, C) merged
        ([-1, 12], 'batch_x20_s20')
    """
    found = _batch_axis(shape)
    if found is None or shape is None:
        return None
    axis, times, step = found
    sizes = [int(size) for size in target]
    total = math.prod(d for k, d in enumerate(shape) if k != axis) * times * batch
    if 0 in sizes:  # a size copied from the input: computed from it already
        return None
    if -1 in sizes:  # the inferred entry, computed: the batch's takes -1
        sizes[sizes.index(-1)] = total // math.prod(s for s in sizes if s != -1)
    if math.prod(sizes) != total:
        return None
    stride = step * math.prod(shape[axis + 1 :])
    spans = [(j, math.prod(sizes[j + 1 :])) for j in range(len(sizes))]
    places = [
        j
        for j, inner in spans
        if inner <= stride <= stride * batch <= inner * sizes[j]
        and stride % inner == 0
        and (inner * sizes[j]) % (stride * batch) == 0
    ]
    if batch == 1:  # no span of its own: the likeliest entry whose span touches its stride
        places = _likeliest(places, dict(spans), sizes, stride)
    if len(places) != 1:
        return None
    (place,) = places
    inner = math.prod(sizes[place + 1 :])
    times, step = sizes[place] // batch, stride // inner
    sizes[place] = -1
    return sizes, _BATCH if (times, step) == (1, 1) else f"{_BATCH}_x{times}_s{step}"


def _likeliest(
    places: list[int], inner: dict[int, int], sizes: list[int], stride: int
) -> list[int]:
    """Of the entries a batch of 1 may be in, the likeliest: one of size 1 at its stride
    (its own axis), else one it is the inner factor of (time-major (T, 1, C) merged into
    (T, C)), else one it is inside, else one it is the outer factor of ((1, T, C) into
    (T, C)). The row check tells a wrong guess."""
    tests = (
        lambda j: sizes[j] == 1 and inner[j] == stride,
        lambda j: inner[j] == stride,
        lambda j: inner[j] < stride < inner[j] * sizes[j],
        lambda j: inner[j] * sizes[j] == stride,
    )
    for test in tests:
        found = [j for j in places if test(j)]
        if found:
            return found[:1]
    return []


def _add_constant(onnx: Any, proto: Any, like: str, value: np.ndarray) -> str:
    name = f"{like}_free_batch"
    proto.graph.initializer.append(onnx.numpy_helper.from_array(value, name))
    return name


def _same_by_rows(proto: Any, freed: Any, batch: int) -> bool:
    """Whether ``freed`` at three times the batch computes what ``proto`` computes on the
    same rows, one batch at a time."""
    ort = require("onnxruntime")
    rows = 3 * batch
    feeds, batched = _seeded_feeds(proto, batch, rows)
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
            original.run(
                None, {k: v[i : i + batch] if k in batched else v for k, v in feeds.items()}
            )
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


def _seeded_feeds(proto: Any, batch: int, rows: int) -> tuple[dict[str, np.ndarray], set[str]]:
    """Seeded inputs, ``rows`` rows of those of ``batch`` rows (named in the set returned),
    the others as declared: normal floats; integers 0 or 1 (ids any embedding takes), 1 for
    one value per row (a length every input has, an id every table holds)."""
    onnx = require("onnx")
    rng = np.random.default_rng(0)
    feeds, batched = {}, set()
    for value in data_inputs(proto):
        dims = declared_dims(value)
        if dims[:1] == [batch]:
            batched.add(value.name)
            dims[0] = rows
        shape = tuple(d or 1 for d in dims)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        if dtype.kind in "iu" and len(shape) == 1:
            feeds[value.name] = np.ones(shape, dtype)
        elif dtype.kind in "iu":
            feeds[value.name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
    return feeds, batched


__all__ = ["fixed_batch", "free_batch"]
