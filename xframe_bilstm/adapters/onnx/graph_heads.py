"""The Dense heads of an ONNX whole model (see :mod:`.graph_import`).

A head is what follows the recurrent trunk up to one graph output: a chain of ``MatMul`` or
``Gemm`` on a constant, ``Add``/``Sub``/``Mul``/``Div`` by constants broadcast over the
features, and float ``Cast``/``Identity`` (the float graph of an int8 Linear is such a chain),
then optionally a ``Softmax``/``LogSoftmax`` on the last axis, ``Sigmoid``, ``Tanh`` or
``Relu``. Being affine, the chain is read by running it: the bias is its value at zero, the
kernel its value at the identity less the bias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import UnsupportedFeatureError
from ...graph import LayerRecord
from .nodes import describe_node, node_attributes

# Operators of a head's affine chain, and the activations that may close it.
AFFINE_OPS = ("MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Cast", "Identity")
ACTIVATIONS = {
    "Softmax": "softmax",
    "LogSoftmax": "log_softmax",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "Relu": "relu",
}
# Operators that only move a quantized embedding's values, before its DequantizeLinear.
FLOAT_TYPES = (1, 10, 11, 16)  # float, float16, double, bfloat16


@dataclass(frozen=True)
class Head:
    """One graph output: the tensor its chain reads, its chain (output side first), and the
    activation closing it."""

    output: str
    reads: str
    chain: tuple[Any, ...]
    activation: str
    constants: dict[str, np.ndarray]


def read_head(output: str, producers: dict[str, Any], constants: dict[str, np.ndarray]) -> Head:
    """The chain from ``output`` back to the first tensor no affine op of a constant makes."""
    tensor, activation = output, "linear"
    node = producers.get(tensor)
    if node is not None and node.op_type in ACTIVATIONS:
        axis = node_attributes(node).get("axis", -1)
        if node.op_type in ("Softmax", "LogSoftmax") and axis != -1:
            axis = int(axis)  # a positive axis is the last one of a (batch, time, units) output
            if axis not in (1, 2):
                raise UnsupportedFeatureError(
                    f"{describe_node(node)}: axis={axis}; a Dense activation normalizes the "
                    "last axis"
                )
        activation, tensor = ACTIVATIONS[node.op_type], node.input[0]
    chain: list[Any] = []
    while (node := producers.get(tensor)) is not None and node.op_type in AFFINE_OPS:
        variable = [name for name in node.input if _constant(name, producers, constants) is None]
        if len(variable) != 1:
            break
        chain.append(node)
        tensor = variable[0]
    if not any(node.op_type in ("MatMul", "Gemm") for node in chain):
        chain = []  # no Dense: its ops (if any) belong to the middle, which reads them
        tensor = output if activation == "linear" else producers[output].input[0]
    values = {
        name: value
        for node in chain
        for name in node.input
        if name and (value := _constant(name, producers, constants)) is not None
    }
    return Head(output, tensor, tuple(chain), activation, values)


def _constant(
    name: str, producers: dict[str, Any], constants: dict[str, np.ndarray]
) -> np.ndarray | None:
    """The value of ``name`` when the graph fixes it, folding arithmetic of constants (an int8
    Linear's product of scales)."""
    if name in constants:
        return constants[name]
    node = producers.get(name)
    if node is None or node.op_type not in ("Mul", "Add", "Sub", "Div", "Cast", "Identity"):
        return None
    values = [_constant(i, producers, constants) for i in node.input]
    if any(v is None for v in values):
        return None
    folded = _affine_step(node, values[0], values[1:])  # type: ignore[arg-type]
    constants[name] = folded
    return folded


def _affine_step(node: Any, x: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
    op = node.op_type
    if op in ("Identity", "Cast"):
        return x
    if op == "Gemm":
        options = node_attributes(node)
        if options.get("transA", 0):
            raise UnsupportedFeatureError(f"{describe_node(node)}: transA=1 is not a Dense")
        b = others[0].T if options.get("transB", 0) else others[0]
        y = options.get("alpha", 1.0) * (x @ b)
        return y + options.get("beta", 1.0) * others[1] if len(others) > 1 else y
    (other,) = others
    return {"MatMul": np.matmul, "Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
            "Div": np.divide}[op](x, other)  # fmt: skip


def _chain_value(head: Head, x: np.ndarray, constants: dict[str, np.ndarray]) -> np.ndarray:
    """The head's chain applied to ``x`` (rows of features), in float64."""
    for node in reversed(head.chain):
        position = next(i for i, name in enumerate(node.input) if name not in constants)
        values = [constants[n].astype(np.float64) for n in node.input if n and n in constants]
        if node.op_type == "Cast" and node_attributes(node).get("to") not in FLOAT_TYPES:
            raise UnsupportedFeatureError(f"{describe_node(node)}: a Cast to a non-float type")
        if position and node.op_type in ("MatMul", "Gemm"):
            raise UnsupportedFeatureError(f"{describe_node(node)}: multiplies from the left")
        for value in values:
            if node.op_type not in ("MatMul", "Gemm") and np.prod(value.shape[:-1]) != 1:
                raise UnsupportedFeatureError(
                    f"{describe_node(node)}: a constant of shape {value.shape} varies along "
                    "more than the features, which a Dense's bias does not"
                )
        values = [v.reshape(v.shape[-1:]) if v.ndim > 1 and node.op_type in
                  ("Add", "Sub", "Mul", "Div") else v for v in values]  # fmt: skip
        if position and node.op_type == "Sub":  # c - x
            x = values[0] - x
        elif position and node.op_type == "Div":
            raise UnsupportedFeatureError(f"{describe_node(node)}: divides a constant by x")
        else:
            x = _affine_step(node, x, values)
    return x


def head_records(head: Head, previous: str, records: list[LayerRecord], index: int) -> str:
    """The records of one head (none without a Dense), returning the output tensor's name."""
    source = previous
    if head.chain:
        constants = head.constants
        features = _features(head, constants)
        zero = _chain_value(head, np.zeros((1, features)), constants)
        kernel = _chain_value(head, np.eye(features), constants) - zero
        name = "dense" if index == 0 else f"dense_{index}"
        options = {"activation": head.activation, "time_distributed": False}
        weights = {"kernel": kernel.astype(np.float32), "bias": zero[0].astype(np.float32)}
        records.append(LayerRecord(name, "dense", "Dense", (source,), options, weights))
        return name
    if head.activation == "linear":
        return source
    name = f"activation_{index}"
    records.append(
        LayerRecord(name, "activation", "Activation", (source,), {"activation": head.activation})
    )
    return name


def _features(head: Head, constants: dict[str, np.ndarray]) -> int:
    """The features the head reads: the rows of its first MatMul/Gemm's constant."""
    for node in reversed(head.chain):
        if node.op_type in ("MatMul", "Gemm"):
            b = constants[node.input[1]]
            return int(b.shape[1] if node_attributes(node).get("transB", 0) else b.shape[0])
    raise AssertionError("a head without MatMul has no chain")


__all__ = ["ACTIVATIONS", "AFFINE_OPS", "FLOAT_TYPES", "Head", "head_records", "read_head"]
