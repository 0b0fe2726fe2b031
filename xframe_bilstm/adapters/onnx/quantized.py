"""Int8 graphs as the float graphs they approximate.

:func:`fold_constant_quantization` folds ``QuantizeLinear``/``DequantizeLinear`` nodes whose
inputs are all constant (initializers or ``Constant`` nodes, chains included) into float (or
integer) initializers, so the nodes they feed read constant weights.

:func:`dequantized_model` rewrites an int8 graph (as ``onnxruntime.quantization.
quantize_dynamic`` writes it) into the float graph its quantization approximates, with
exactly the dequantized weights ``(q - zero_point) * scale``:

- ``com.microsoft.DynamicQuantizeLSTM`` becomes an ``LSTM`` node whose ``W``/``R`` are the
  dequantized int8 weights, transposed from the kernel's (directions, input, 4H) layout to
  ONNX's (directions, 4H, input); its other inputs and attributes are kept.
- ``com.microsoft.DynamicQuantizeMatMul`` becomes ``MatMul`` on the dequantized ``B``, plus
  ``Add`` of its bias.
- ``DynamicQuantizeLinear`` passes its input through (``y = x``, scale 1, zero point 0, in
  float), and ``MatMulInteger`` becomes a float ``MatMul`` of its operands less their zero
  points: the ``Cast`` and scale ``Mul`` that follow then compute ``x @ dequantized(B)``.
- A ``QuantizeLinear`` of a computed value whose every reader is a ``DequantizeLinear``
  (the QDQ form of activations) passes the value through, as do those readers.
- A ``Gather`` of an embedding table quantized to 8 bits gathers the float table
  (:mod:`.quantized_tables`).

The result is a standard float graph: onnxruntime and :func:`~.interpreter.onnx_module` run
it, and :func:`~xframe_bilstm.onnx_converters.onnx_to_torch` converts it. onnx is imported
inside the functions, so importing this module imports no framework.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._imports import require
from ...errors import UnsupportedFeatureError
from .nodes import constant_node_value, describe_node, node_attributes
from .quantized_tables import dequantized_tables
from .runtime import load_model

_MS = "com.microsoft"
# Attributes DynamicQuantizeLSTM shares with LSTM.
_LSTM_ATTRIBUTES = (
    "activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size",
    "input_forget",
)  # fmt: skip


def dequantize_array(
    q: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int = 1
) -> np.ndarray:
    """``(q - zero) * scale`` in float32, per tensor or along ``axis``, as ONNX's
    ``DequantizeLinear`` defines it.

    Example:
        >>> dequantize_array(np.array([[-2, 4]], np.int8), np.array([0.5, 0.25], np.float32),
        ...                  np.array([0, 0], np.int8)).tolist()
        [[-1.0, 1.0]]
    """
    shifted = q.astype(np.int32)
    if zero is not None:
        shifted = shifted - _along(zero.astype(np.int32), axis, q.ndim)
    return (shifted.astype(np.float32) * _along(scale.astype(np.float32), axis, q.ndim)).astype(
        np.float32
    )


def quantize_array(
    x: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int = 1
) -> np.ndarray:
    """``saturate(round(x / scale) + zero)``, rounding half to even, to ``zero``'s type
    (uint8 without one), as ONNX's ``QuantizeLinear`` defines it.

    Example:
        >>> quantize_array(np.array([0.5, 1.5, 300.0], np.float32), np.array(1.0, np.float32),
        ...                np.array(0, np.uint8)).tolist()
        [0, 2, 255]
    """
    target = np.dtype(np.uint8) if zero is None else zero.dtype
    if target not in (np.dtype(np.uint8), np.dtype(np.int8)):
        raise UnsupportedFeatureError(
            f"quantization to {target} is not supported (int8 and uint8 are)"
        )
    info = np.iinfo(target)
    rounded = np.round(x.astype(np.float32) / _along(scale.astype(np.float32), axis, x.ndim))
    if zero is not None:
        rounded = rounded + _along(zero.astype(np.float32), axis, x.ndim)
    return np.clip(rounded, info.min, info.max).astype(target)


def _along(value: np.ndarray, axis: int, rank: int) -> np.ndarray:
    if value.size == 1:
        return value.reshape(())
    shape = [1] * rank
    shape[axis % rank] = value.size
    return value.reshape(shape)


def fold_constant_quantization(model_or_path: Any) -> Any:
    """A copy of the graph with every ``QuantizeLinear``/``DequantizeLinear`` node on
    constant inputs replaced by an initializer holding its result (chains folded in order).

    Raises:
        UnsupportedFeatureError: blocked quantization (``block_size``) or a type other than
            int8 and uint8, naming the node.
    """
    onnx = require("onnx")
    model = _copy(load_model(model_or_path))
    graph = model.graph
    constants = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    kept = []
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            constants[node.output[0]] = constant_node_value(onnx, node)
        folded = _fold(node, constants)
        if folded is None:
            kept.append(node)
            continue
        constants[node.output[0]] = folded
        graph.initializer.append(onnx.numpy_helper.from_array(folded, node.output[0]))
    del graph.node[:]
    graph.node.extend(kept)
    return _prune(model)


def _fold(node: Any, constants: dict[str, np.ndarray]) -> np.ndarray | None:
    if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or node.domain not in (
        "",
        "ai.onnx",
    ):
        return None
    names = [name for name in node.input if name]
    if not all(name in constants for name in names):
        return None
    attributes = node_attributes(node)
    if attributes.get("block_size", 0):
        raise UnsupportedFeatureError(
            f"{describe_node(node)}: blocked quantization (block_size) is not supported"
        )
    values = [constants[name] if name else None for name in node.input] + [None] * 3
    data, scale, zero = values[0], values[1], values[2]
    if data is None or scale is None:
        return None  # not a valid node; onnxruntime and the interpreter say so
    axis = int(attributes.get("axis", 1))
    try:
        if node.op_type == "DequantizeLinear":
            return dequantize_array(data, scale, zero, axis)
        return quantize_array(data, scale, zero, axis)
    except UnsupportedFeatureError as error:
        raise UnsupportedFeatureError(f"{describe_node(node)}: {error}") from error


def dequantized_model(model_or_path: Any) -> Any:
    """The float graph an int8 graph approximates, with exactly its dequantized weights.

    Raises:
        UnsupportedFeatureError: a ``DynamicQuantizeLSTM``/``DynamicQuantizeMatMul`` or
            ``MatMulInteger`` whose weights are not constant, naming the node.

    Example:
        >>> import onnx
        >>> from onnx import helper, numpy_helper, TensorProto
        >>> w = numpy_helper.from_array(np.array([[2, -4]], np.int8), "w")
        >>> s = numpy_helper.from_array(np.array(0.5, np.float32), "s")
        >>> node = helper.make_node("DynamicQuantizeMatMul", ["x", "w", "s"], ["y"],
        ...                         domain="com.microsoft", name="dense")
        >>> graph = helper.make_graph([node], "g",
        ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 1])],
        ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])], [w, s])
        >>> float_graph = dequantized_model(helper.make_model(graph))
        >>> [n.op_type for n in float_graph.graph.node]
        ['MatMul']
        >>> numpy_helper.to_array(float_graph.graph.initializer[-1]).tolist()
        [[1.0, -2.0]]
    """
    onnx = require("onnx")
    model = fold_constant_quantization(model_or_path)
    graph = model.graph
    constants = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    dequantized_tables(model, constants)
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    rewriter = _Rewriter(onnx, constants, readers)
    nodes = [new for node in graph.node for new in rewriter.rewrite(node)]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(rewriter.initializers)
    _retype_integer_outputs(onnx, graph, rewriter.floated)
    return _prune(model)


class _Rewriter:
    """Rewrites one node at a time into float nodes; collects the new initializers."""

    def __init__(self, onnx: Any, constants: dict[str, np.ndarray], readers: dict[str, Any]):
        self.onnx = onnx
        self.constants = constants
        self.readers = readers
        self.initializers: list[Any] = []
        self.passed: set[str] = set()  # values passed through in place of their quantized form
        self.floated: set[str] = set()  # outputs that were integer and are now float

    def constant(self, node: Any, index: int, what: str) -> np.ndarray | None:
        name = node.input[index] if index < len(node.input) else ""
        if not name:
            return None
        if name not in self.constants:
            raise UnsupportedFeatureError(
                f"{describe_node(node)}: its {what} {name!r} is computed at run time; the "
                "dequantized float model needs constant quantized weights"
            )
        return self.constants[name]

    def add(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self.onnx.numpy_helper.from_array(value, name))
        self.constants[name] = value
        return name

    def rewrite(self, node: Any) -> list[Any]:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        handler = {
            f"{_MS}.DynamicQuantizeLSTM": self._lstm,
            f"{_MS}.DynamicQuantizeMatMul": self._dynamic_matmul,
            "DynamicQuantizeLinear": self._dynamic_quantize_linear,
            "MatMulInteger": self._matmul_integer,
            "QuantizeLinear": self._quantize_linear,
            "DequantizeLinear": self._dequantize_linear,
        }.get(key)
        return [node] if handler is None else handler(node)

    def _lstm(self, node: Any) -> list[Any]:
        helper = self.onnx.helper
        attributes = node_attributes(node)
        weights = []
        for slot, scale_slot, label in ((1, 8, "W"), (2, 10, "R")):
            q = self.constant(node, slot, label)
            scale = self.constant(node, scale_slot, f"{label}_scale")
            zero = self.constant(node, scale_slot + 1, f"{label}_zero_point")
            assert q is not None and scale is not None
            # Per direction (directions,) or per column (directions, 4H): both along axis 0,
            # then along the last axis for the per-column form.
            scale_b = scale.reshape(scale.shape[0], 1, -1)
            zero_b = None if zero is None else zero.reshape(zero.shape[0], 1, -1)
            shifted = q.astype(np.int32) - (0 if zero_b is None else zero_b.astype(np.int32))
            value = (shifted.astype(np.float32) * scale_b.astype(np.float32)).astype(np.float32)
            weights.append(self.add(f"{node.input[slot]}_dequantized", value.transpose(0, 2, 1)))
        inputs = [node.input[0], *weights, *node.input[3:8]]
        while inputs and not inputs[-1]:
            inputs.pop()
        kept = {k: v for k, v in attributes.items() if k in _LSTM_ATTRIBUTES}
        return [helper.make_node("LSTM", inputs, list(node.output), name=node.name, **kept)]

    def _dynamic_matmul(self, node: Any) -> list[Any]:
        helper = self.onnx.helper
        b = self.constant(node, 1, "B")
        scale = self.constant(node, 2, "b_scale")
        zero = self.constant(node, 3, "b_zero_point")
        assert b is not None and scale is not None
        value = dequantize_array(b, scale, zero, axis=-1)
        weight = self.add(f"{node.input[1]}_dequantized", value)
        bias = node.input[4] if len(node.input) > 4 else ""
        if not bias:
            return [helper.make_node("MatMul", [node.input[0], weight], [node.output[0]],
                                     name=node.name)]  # fmt: skip
        product = f"{node.output[0]}_matmul"
        return [
            helper.make_node("MatMul", [node.input[0], weight], [product], name=node.name),
            helper.make_node("Add", [product, bias], [node.output[0]], name=f"{node.name}_bias"),
        ]

    def _dynamic_quantize_linear(self, node: Any) -> list[Any]:
        helper = self.onnx.helper
        y, scale, zero = [*node.output, "", ""][:3]
        self.passed.add(y)
        nodes = [helper.make_node("Identity", [node.input[0]], [y], name=node.name)]
        for name, value in ((scale, 1.0), (zero, 0.0)):
            if name:
                self.add(name, np.array(value, np.float32))
        return nodes

    def _float_operand(self, node: Any, index: int, zero_index: int) -> tuple[list[Any], str]:
        """Operand ``index`` of a MatMulInteger less its zero point, as float."""
        helper = self.onnx.helper
        name = node.input[index]
        zero_name = node.input[zero_index] if zero_index < len(node.input) else ""
        if name in self.constants and (not zero_name or zero_name in self.constants):
            value = self.constants[name].astype(np.int32)
            if zero_name:
                zero = self.constants[zero_name].astype(np.int32)
                value = value - (zero.reshape(-1, 1) if index == 0 and zero.size > 1 else zero)
            return [], self.add(
                f"{name}_float_{node.name or node.output[0]}", value.astype(np.float32)
            )
        cast = f"{name}_float_{node.output[0]}"
        nodes = [helper.make_node("Cast", [name], [cast], to=self.onnx.TensorProto.FLOAT)]
        if not zero_name or (zero_name in self.passed or _is_zero(self.constants.get(zero_name))):
            return nodes, cast
        zero_cast = f"{zero_name}_float_{node.output[0]}"
        shifted = f"{cast}_shifted"
        nodes += [
            helper.make_node("Cast", [zero_name], [zero_cast], to=self.onnx.TensorProto.FLOAT),
            helper.make_node("Sub", [cast, zero_cast], [shifted]),
        ]
        return nodes, shifted

    def _matmul_integer(self, node: Any) -> list[Any]:
        helper = self.onnx.helper
        a_nodes, a = self._float_operand(node, 0, 2)
        b_nodes, b = self._float_operand(node, 1, 3)
        self.floated.add(node.output[0])
        matmul = helper.make_node("MatMul", [a, b], [node.output[0]], name=node.name)
        return [*a_nodes, *b_nodes, matmul]

    def _quantize_linear(self, node: Any) -> list[Any]:
        readers = self.readers.get(node.output[0], [])
        if not readers or any(r.op_type != "DequantizeLinear" for r in readers):
            return [node]
        self.passed.add(node.output[0])
        return [self.onnx.helper.make_node("Identity", [node.input[0]], [node.output[0]],
                                           name=node.name)]  # fmt: skip

    def _dequantize_linear(self, node: Any) -> list[Any]:
        if node.input[0] not in self.passed:
            return [node]
        return [self.onnx.helper.make_node("Identity", [node.input[0]], [node.output[0]],
                                           name=node.name)]  # fmt: skip


def _is_zero(value: np.ndarray | None) -> bool:
    return value is not None and not np.any(value)


def _retype_integer_outputs(onnx: Any, graph: Any, floated: set[str]) -> None:
    """Declared types of values that became float (MatMulInteger's int32 result)."""
    for info in [*graph.value_info, *graph.output]:
        if info.name in floated:
            info.type.tensor_type.elem_type = onnx.TensorProto.FLOAT


def _copy(model: Any) -> Any:
    onnx = require("onnx")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _prune(model: Any) -> Any:
    """Drop initializers no node or output reads, and the com.microsoft opset when unused."""
    graph = model.graph
    read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for attribute_graph in _subgraphs(graph):
        read |= {name for node in attribute_graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in read]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(node.domain == _MS for node in graph.node):
        opsets = [o for o in model.opset_import if o.domain != _MS]
        del model.opset_import[:]
        model.opset_import.extend(opsets)
    return model


def _subgraphs(graph: Any) -> list[Any]:
    found = []
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.g.node:
                found.append(attribute.g)
                found.extend(_subgraphs(attribute.g))
    return found


def quantized_nodes(model_or_path: Any) -> list[str]:
    """Describe the int8 nodes of a graph (``DynamicQuantizeLSTM``, ``MatMulInteger``, ...),
    one string each; empty for a float graph.

    Example:
        >>> import onnx
        >>> node = onnx.helper.make_node("MatMulInteger", ["a", "b"], ["y"], name="dense")
        >>> quantized_nodes(onnx.helper.make_model(onnx.helper.make_graph([node], "g", [], [])))
        ["MatMulInteger node 'dense'"]
    """
    model = load_model(model_or_path)
    kinds = {"DynamicQuantizeLSTM", "DynamicQuantizeMatMul", "MatMulInteger",
             "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear"}  # fmt: skip
    return [describe_node(node) for node in model.graph.node if node.op_type in kinds]
