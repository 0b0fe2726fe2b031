"""``graph_to_model``: an ONNX graph of a whole recurrent model (token ids in, Dense out).

A graph :func:`~.importer.graph_to_canonical` refuses because it has an embedding front end
or a Dense head reads as a :class:`~xframe_bilstm.graph.ModelGraph`, cut in three:

- the front: an ``input`` of token ids (an integer graph input) read by a ``Gather`` of a
  constant table, an ``embedding`` (``mask_zero=False``) of that table; a table quantized to
  int8 (``Gather`` then ``DequantizeLinear``, per tensor) is read dequantized;
- the middle: the recurrent nodes and their glue, read by ``graph_to_canonical`` on the
  sub-graph from the embedded sequence to the tensor the head reads (its candidate matching
  unchanged), one ``recurrent`` record per layer;
- the heads: per graph output, a chain of ``MatMul``/``Gemm`` on a constant, ``Add``,
  ``Sub``, ``Mul``, ``Div`` by constants and float ``Cast``/``Identity`` (the float graph
  of an int8 Linear is such a chain), read as a ``dense`` of kernel (D, units) and bias,
  with the activation of a ``Softmax``/``LogSoftmax`` (last axis), ``Sigmoid``, ``Tanh`` or
  ``Relu`` after it.

The reading is verified: the graph on onnxruntime against ``run_model_reference`` of the
reading on seeded ids. Any other operator is refused, naming its node. onnx and onnxruntime
are imported inside the functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._imports import require
from ...errors import UnsupportedFeatureError
from ...graph import LayerRecord, ModelGraph
from .graph_heads import ACTIVATIONS, AFFINE_OPS, FLOAT_TYPES, head_records, read_head
from .interpreter import GLUE_OPS
from .nodes import constant_values, declared_dims, describe_node, node_attributes
from .quantized import dequantize_array
from .runtime import load_model
from .vocabulary import CELL_BY_OP

_MOVES = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity")
_MIDDLE_INPUT = "embedded"
_MATCH = 1e-4  # float32 graph against the float64 reading


def graph_to_model(model_or_path: Any, *, verify: bool = True) -> ModelGraph:
    """The whole model an ONNX graph of an embedding, recurrent nodes and Dense heads
    computes (see the module's rules), verified on onnxruntime.

    Raises:
        UnsupportedFeatureError: several inputs, an operator outside the front, middle and
            head vocabularies (named with its node), heads reading different tensors, a middle
            ``graph_to_canonical`` refuses, or a reading that does not reproduce the graph.
    """
    proto = load_model(model_or_path)
    graph = proto.graph
    constants = constant_values(proto)
    producers = {out: node for node in graph.node for out in node.output}
    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1:
        raise UnsupportedFeatureError(
            f"the graph has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); a whole "
            "model is read from one input of token ids or one (batch, time, features) sequence"
        )
    (graph_input,) = inputs
    heads = [read_head(out.name, producers, constants) for out in graph.output]
    trunk = {head.reads for head in heads}
    if len(trunk) != 1:
        raise UnsupportedFeatureError(
            f"the graph's outputs read different tensors ({', '.join(sorted(trunk))}) before "
            "their Dense heads; a whole model is read with one recurrent trunk"
        )
    (trunk_output,) = trunk
    records: list[LayerRecord] = []
    elem_type = graph_input.type.tensor_type.elem_type
    if elem_type in FLOAT_TYPES:
        middle_input, dims = graph_input.name, declared_dims(graph_input)
        if len(dims) != 3:
            raise UnsupportedFeatureError(
                f"the graph's float input {graph_input.name!r} has rank {len(dims)}; a whole "
                "model reads token ids (batch, time) or a sequence (batch, time, features)"
            )
        records.append(_input_record(graph_input.name, (dims[1], dims[2]), "float32"))
        previous = graph_input.name
        middle = _middle_model(proto, middle_input, trunk_output, None)
    else:
        gather, table = _embedding(graph, graph_input.name, producers, constants)
        dims = declared_dims(graph_input)
        records.append(_input_record(graph_input.name, (dims[1],), "int64"))
        records.append(
            LayerRecord(
                "embedding", "embedding", "Embedding", (graph_input.name,),
                {"mask_zero": False}, {"embeddings": table},
            )
        )  # fmt: skip
        previous = "embedding"
        middle = _middle_model(proto, _MIDDLE_INPUT, trunk_output, (gather, table))
    previous = _recurrent_records(middle, trunk_output, previous, records)
    outputs = [head_records(head, previous, records, index) for index, head in enumerate(heads)]
    model = ModelGraph(
        graph.name or "onnx", tuple(records), (graph_input.name,), tuple(outputs),
        source=f"ONNX graph {graph.name or ''}".strip(),
    )  # fmt: skip
    if verify:
        verify_model(proto, model)
    return model


def _input_record(name: str, shape: tuple[int | None, ...], dtype: str) -> LayerRecord:
    return LayerRecord(name, "input", "InputLayer", options={"shape": shape, "dtype": dtype})


def _embedding(
    graph: Any, ids: str, producers: dict[str, Any], constants: dict[str, np.ndarray]
) -> tuple[Any, np.ndarray]:
    """The Gather reading the ids from a constant table, and the table (dequantized)."""
    readers = [
        node
        for node in graph.node
        if node.op_type == "Gather" and len(node.input) > 1 and _source(node.input[1], producers)
        == ids and node.input[0] in constants
    ]  # fmt: skip
    if len(readers) != 1:
        found = [describe_node(node) for node in graph.node if ids in node.input]
        raise UnsupportedFeatureError(
            f"the token ids {ids!r} are read by {', '.join(found) or 'no node'}; a whole model "
            "is read from one Gather of a constant embedding table"
        )
    (gather,) = readers
    if node_attributes(gather).get("axis", 0) != 0:
        raise UnsupportedFeatureError(f"{describe_node(gather)}: gathers along axis != 0")
    table = constants[gather.input[0]]
    if np.issubdtype(table.dtype, np.floating):
        return gather, table.astype(np.float32)
    scale, zero = _dequantizer(graph, gather, constants)
    return gather, dequantize_array(table, np.array(scale), np.array(zero, table.dtype))


def _source(name: str, producers: dict[str, Any]) -> str:
    """``name`` before any Cast (torch casts the ids to int64)."""
    while (node := producers.get(name)) is not None and node.op_type == "Cast":
        name = node.input[0]
    return name


def _quantized_readers(graph: Any, gather: Any) -> list[Any]:
    """The DequantizeLinear nodes reading the quantized Gather, through moves of its values."""
    found, tensors = [], [gather.output[0]]
    while tensors:
        tensor = tensors.pop()
        for node in graph.node:
            if tensor not in node.input:
                continue
            if node.op_type == "DequantizeLinear" and node.input[0] == tensor:
                found.append(node)
            elif node.op_type in _MOVES and node.input[0] == tensor:
                tensors.append(node.output[0])
            else:
                raise UnsupportedFeatureError(
                    f"{describe_node(node)} reads the int8 embedding {tensor!r}; only moves "
                    f"({', '.join(_MOVES)}) and DequantizeLinear may"
                )
    return found


def _dequantizer(graph: Any, gather: Any, constants: dict[str, np.ndarray]) -> tuple[float, int]:
    pairs = set()
    for node in _quantized_readers(graph, gather):
        scale = constants.get(node.input[1])
        zero = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is None or scale.size != 1 or (zero is not None and zero.size != 1):
            raise UnsupportedFeatureError(
                f"{describe_node(node)}: dequantizes the embedding with a scale that is not "
                "one constant"
            )
        pairs.add((float(scale.reshape(())), 0 if zero is None else int(zero.reshape(()))))
    if len(pairs) != 1:
        raise UnsupportedFeatureError(
            f"{describe_node(gather)}: its int8 rows are dequantized with {len(pairs)} scales"
        )
    (pair,) = pairs
    return pair


def _middle_model(
    proto: Any, middle_input: str, output: str, embedding: tuple[Any, np.ndarray] | None
) -> Any:
    """The sub-graph computing ``output`` from the embedded sequence (a new float input in
    place of the Gather, its int8 path read as float), every operator checked."""
    onnx = require("onnx")
    helper = onnx.helper
    nodes = list(proto.graph.node)
    features: int | None = None
    if embedding is not None:
        gather, table = embedding
        features = int(table.shape[1])
        quantized = not np.issubdtype(constant_values(proto)[gather.input[0]].dtype, np.floating)
        dequantize = (
            {id(n) for n in _quantized_readers(proto.graph, gather)} if quantized else set()
        )
        nodes = [
            helper.make_node("Identity", [middle_input], [gather.output[0]], name="embedded")
            if node is gather
            else helper.make_node("Identity", [node.input[0]], [node.output[0]], name=node.name)
            if id(node) in dequantize
            else node
            for node in nodes
        ]
    producers = {out: node for node in nodes for out in node.output}
    needed, stack = [], [output]
    seen: set[str] = set()
    while stack:
        tensor = stack.pop()
        node = producers.get(tensor)
        if tensor in seen or node is None:
            continue
        seen.add(tensor)
        if node.op_type not in GLUE_OPS and node.op_type not in CELL_BY_OP:
            raise UnsupportedFeatureError(
                f"{describe_node(node)}: operator {node.op_type} between the embedding and the "
                "Dense heads; a whole model reads recurrent nodes (LSTM, GRU, RNN) and their "
                f"glue there, Dense heads after them ({', '.join(AFFINE_OPS)} with constants, "
                f"then {', '.join(ACTIVATIONS)})"
            )
        needed.append(node)
        stack.extend(name for name in node.input if name)
    kept = [node for node in nodes if any(node is n for n in needed)]
    used = {name for node in kept for name in node.input}
    initializers = [init for init in proto.graph.initializer if init.name in used]
    if embedding is None:
        (declared,) = [i for i in proto.graph.input if i.name == middle_input]
    else:
        declared = helper.make_tensor_value_info(
            middle_input, onnx.TensorProto.FLOAT, ["batch", "time", features]
        )
    result = helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)
    sub = helper.make_graph(kept, "middle", [declared], [result], initializers)
    return helper.make_model(
        sub, opset_imports=list(proto.opset_import), ir_version=proto.ir_version
    )


def _recurrent_records(middle: Any, output: str, previous: str, records: list[LayerRecord]) -> str:
    """The recurrent records of the middle, as ``graph_to_canonical`` reads it."""
    from .importer import graph_to_canonical

    try:
        stack = graph_to_canonical(middle)
    except UnsupportedFeatureError as error:
        raise UnsupportedFeatureError(
            f"the recurrent layers between the embedding and the Dense heads (up to {output!r}): "
            f"{error}"
        ) from error
    last = len(stack.layers) - 1
    for index, layer in enumerate(stack.layers):
        name = f"{layer.cell}_{index}"
        options = {
            "return_sequences": index < last or stack.return_sequences,
            "time_major": False,
            "unroll": False,
        }
        records.append(
            LayerRecord(
                name, "recurrent", _CLASS[layer.cell], (previous,), options, recurrent=layer
            )
        )
        previous = name
    return previous


_CLASS = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}


def verify_model(proto: Any, model: ModelGraph, *, seed: int = 0) -> None:
    """Check that ``model`` computes what ``proto`` computes on onnxruntime, on seeded
    inputs (token ids below the vocabulary, or normal features).

    Raises:
        UnsupportedFeatureError: an output differs, naming it and by how much.
    """
    from ...reference.graph import run_model_reference

    ort = require("onnxruntime")
    x = _seeded_input(model, seed)
    expected = run_model_reference(model, [x])
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    actual = session.run(None, {model.inputs[0]: x})
    names = [output.name for output in proto.graph.output]
    for name, e, a in zip(names, expected, actual, strict=True):
        a = np.asarray(a, np.float64)
        error = np.inf if e.shape != a.shape else float(np.max(np.abs(e - a), initial=0.0))
        if error > _MATCH * max(1.0, float(np.max(np.abs(e), initial=0.0))):
            raise UnsupportedFeatureError(
                f"the graph's output {name!r} differs from the model read from it "
                f"({_summary(model)}) by {error:.3g} on seeded inputs "
                f"(shapes {a.shape} and {e.shape}); onnx_to_torch runs the graph as it is"
            )


def _seeded_input(model: ModelGraph, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    record = model.layer(model.inputs[0])
    shape = tuple(options if options is not None else 5 for options in record.options["shape"])
    if record.options["dtype"] == "int64":
        vocabulary = model.layer("embedding").weights["embeddings"].shape[0]
        return rng.integers(0, vocabulary, (2, *shape), dtype=np.int64)
    return rng.standard_normal((2, *shape)).astype(np.float32)


def _summary(model: ModelGraph) -> str:
    return ", ".join(record.class_name for record in model.layers if record.kind != "input")


def looks_whole(model_or_path: Any) -> bool:
    """Whether a graph of recurrent nodes reads token ids (an integer input) or ends in a
    MatMul/Gemm head, so that a refusal of :func:`graph_to_model` says more than the
    recurrent reading's."""
    proto = load_model(model_or_path)
    if not has_recurrent_nodes(proto):
        return False  # no recurrent layer: the importer's refusal says so
    constants = constant_values(proto)
    inputs = [i for i in proto.graph.input if i.name not in constants]
    if any(i.type.tensor_type.elem_type not in FLOAT_TYPES for i in inputs):
        return True
    producers = {out: node for node in proto.graph.node for out in node.output}
    return any(read_head(out.name, producers, dict(constants)).chain for out in proto.graph.output)


def has_recurrent_nodes(proto: Any) -> bool:
    """Whether the graph (not its subgraphs) holds an LSTM, GRU or RNN node."""
    return any(node.op_type in CELL_BY_OP for node in proto.graph.node)


def input_sizes(model_or_path: Any) -> tuple[int | None, int | None]:
    """The batch and time sizes the graph's (batch, time...) input fixes, None when dynamic."""
    proto = load_model(model_or_path)
    constants = constant_values(proto)
    (graph_input,) = [i for i in proto.graph.input if i.name not in constants]
    dims = declared_dims(graph_input)
    return dims[0], dims[1]


__all__ = ["graph_to_model", "has_recurrent_nodes", "input_sizes", "looks_whole", "verify_model"]
