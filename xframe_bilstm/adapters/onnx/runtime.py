"""Running exported graphs: the newest opset onnxruntime loads, loading models, onnxruntime.

onnx and onnxruntime are imported inside the functions, so importing this module imports no
framework. Graphs are run in float32: onnxruntime's CPU recurrent kernels have no float64
version.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..._imports import require
from ...errors import UnsupportedFeatureError, WeightShapeError
from ...masks import check_lengths
from .vocabulary import LENGTHS_INPUT, MIN_OPSET, ir_version


def newest_runtime_opset() -> int:
    """The newest default-domain opset that the installed onnxruntime loads (cached).

    Found by loading a one-node model at each opset from onnx's newest down, since
    onnxruntime publishes no such number. Without onnxruntime, onnx's newest opset.

    Example:
        >>> newest_runtime_opset() >= 14
        True
    """
    if _NEWEST_OPSET:
        return _NEWEST_OPSET[0]
    onnx = require("onnx")
    newest = int(onnx.defs.onnx_opset_version())
    try:
        ort = require("onnxruntime")
    except ImportError:
        return newest
    for opset in range(newest, MIN_OPSET - 1, -1):
        model = probe_model(opset)
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception:  # onnxruntime raises its own exception types; any means "no"
            continue
        _NEWEST_OPSET.append(opset)
        return opset
    raise UnsupportedFeatureError(
        f"the installed onnxruntime {ort.__version__} loads no opset from {MIN_OPSET} to {newest}"
    )


_NEWEST_OPSET: list[int] = []


def probe_model(opset: int = MIN_OPSET) -> Any:
    """A one-node float32 ``Identity`` model at ``opset``, to find out what a runtime loads."""
    onnx = require("onnx")
    helper, float_type = onnx.helper, onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", float_type, [1])],
        [helper.make_tensor_value_info("y", float_type, [1])],
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        ir_version=ir_version(onnx, opset),
    )


def load_model(model_or_path: Any) -> Any:
    """An ``onnx.ModelProto`` from a ModelProto, serialized bytes or a file path.

    Example:
        >>> load_model(b"").graph.name
        ''
    """
    onnx = require("onnx")
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    if isinstance(model_or_path, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model_or_path))
    if isinstance(model_or_path, (str, os.PathLike)):
        return onnx.load(os.fspath(model_or_path))
    raise UnsupportedFeatureError(
        f"{type(model_or_path).__name__} is not an ONNX model; pass an onnx.ModelProto, its "
        "serialized bytes or a path to a .onnx file"
    )


def run_onnxruntime(
    model: Any,
    x: np.ndarray | tuple[np.ndarray, ...],
    *,
    initial_states: Sequence[np.ndarray] | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
    providers: Sequence[str | tuple[str, dict[str, Any]]] | None = None,
    session_options: Any = None,
) -> tuple[np.ndarray, ...]:
    """Run an exported model on onnxruntime and return its outputs in graph order.

    For a graph made by :func:`canonical_to_onnx` that order is
    :func:`~xframe_bilstm.canonical.output_names`. State inputs the graph has but the call
    does not give are fed zeros (Keras's default), and a ``lengths`` input the call does not
    give is fed the full length.

    Args:
        model: a ModelProto, its bytes or a path.
        x: input (B, T, D), cast to the graph's input dtype (float32 for exported graphs);
            a tuple holds one array per graph input, in graph order.
        initial_states: every layer's initial states in Keras order, each (B, H); the graph
            must have been exported ``with_initial_states=True``.
        lengths: valid steps per row (B,); the graph must have been exported
            ``with_lengths=True``.
        providers: onnxruntime execution providers, names or ``(name, options)`` pairs;
            default CPU.
        session_options: an ``onnxruntime.SessionOptions``; default onnxruntime's.

    Returns:
        numpy arrays, one per graph output.

    Example:
        >>> from xframe_bilstm.adapters.onnx import canonical_to_onnx
        >>> from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer, RecurrentStack
        >>> w = DirectionWeights(np.ones((1, 1)), np.zeros((1, 1)))
        >>> stack = RecurrentStack((RecurrentLayer("simple_rnn", 1, 1, (w,),
        ...     activation="linear", recurrent_activation=None),))
        >>> (y,) = run_onnxruntime(canonical_to_onnx(stack, opset=14), np.ones((1, 2, 1)))
        >>> y.tolist()
        [[[1.0], [1.0]]]
    """
    ort = require("onnxruntime")
    proto = load_model(model)
    feeds = graph_feeds(proto, x, initial_states=initial_states, lengths=lengths)
    session = ort.InferenceSession(
        proto.SerializeToString(),
        sess_options=session_options,
        providers=list(providers or ["CPUExecutionProvider"]),
    )
    return tuple(np.asarray(value) for value in session.run(None, feeds))


def graph_feeds(
    model: Any,
    x: np.ndarray | tuple[np.ndarray, ...],
    *,
    initial_states: Sequence[np.ndarray] | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The inputs of a recurrent graph by name, each cast to the dtype the graph declares.

    The first graph input (that is not an initializer) takes ``x``; an input named
    ``lengths`` takes ``lengths`` (the full length when not given); the others are (B, H)
    initial states in Keras order, fed zeros when ``initial_states`` is None. A tuple ``x``
    holds one array per graph input, in graph order (a whole model's inputs, as
    :func:`~xframe_bilstm.adapters.onnx.graph_export.graph_to_onnx` names them).

    Raises:
        WeightShapeError: ``x`` not (B, T, D), or not one array per graph input; a count of
            states or lengths that do not fit.
        UnsupportedFeatureError: ``lengths`` for a graph without a ``lengths`` input.
    """
    onnx = require("onnx")
    proto = load_model(model)
    initializers = {i.name for i in proto.graph.initializer}
    graph_inputs = [i for i in proto.graph.input if i.name not in initializers]
    dtypes = {
        i.name: onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
        for i in graph_inputs
    }
    names = [i.name for i in graph_inputs]
    if isinstance(x, tuple):
        if len(x) != len(names):
            raise WeightShapeError(f"x: the graph takes {names}, got {len(x)} arrays")
        return {name: np.asarray(a).astype(dtypes[name]) for name, a in zip(names, x)}
    x = np.asarray(x)
    if x.ndim != 3:
        raise WeightShapeError(f"x: expected shape (batch, time, features), got {x.shape}")
    feeds: dict[str, np.ndarray] = {names[0]: x.astype(dtypes[names[0]])}
    state_inputs = [i for i in graph_inputs[1:] if i.name != LENGTHS_INPUT]
    if initial_states is not None:
        if len(initial_states) != len(state_inputs):
            raise WeightShapeError(
                f"initial_states: the graph takes {len(state_inputs)} state inputs "
                f"{[i.name for i in state_inputs]} (export with with_initial_states=True to "
                f"add them), got {len(initial_states)} arrays"
            )
        for graph_input, state in zip(state_inputs, initial_states):
            feeds[graph_input.name] = np.asarray(state).astype(dtypes[graph_input.name])
    else:
        for graph_input in state_inputs:
            dims = graph_input.type.tensor_type.shape.dim
            if len(dims) != 2 or not dims[1].dim_value:
                raise WeightShapeError(
                    f"graph input {graph_input.name!r} is not a (batch, units) state; pass it"
                )
            shape = (x.shape[0], dims[1].dim_value)
            feeds[graph_input.name] = np.zeros(shape, dtypes[graph_input.name])
    if LENGTHS_INPUT in names:
        values = np.full(x.shape[0], x.shape[1]) if lengths is None else np.asarray(lengths)
        feeds[LENGTHS_INPUT] = check_lengths(values, x.shape[0], x.shape[1]).astype(
            dtypes[LENGTHS_INPUT]
        )
    elif lengths is not None:
        raise UnsupportedFeatureError(
            "lengths: the graph has no 'lengths' input; export it with with_lengths=True"
        )
    return feeds
