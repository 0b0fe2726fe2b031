"""``onnx_module``: a torch module that runs an ONNX graph of recurrent nodes and glue, exactly.

The graph runs node by node: recurrent nodes on :mod:`.recurrent`'s ``OnnxRecurrent``, the glue
(:data:`GLUE_OPS`, and the standard operators of :data:`.standard_ops.STANDARD_OPS`) with torch
ops following each ONNX operator, older opsets' attribute forms included. An operator outside
those is refused, naming it and its node.

torch and onnx are imported inside the functions, so importing this module imports no
framework.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._imports import require
from ...errors import UnsupportedFeatureError, WeightShapeError
from .nodes import (
    constant_node_value,
    constant_values,
    describe_node,
    node_attributes,
    read_recurrent_node,
    recurrent_in_node,
)
from .op_call import OpCall
from .recurrent import recurrent_classes
from .runtime import load_model
from .standard_ops import STANDARD_OPS
from .vocabulary import CELL_BY_OP

# Glue operators the interpreter runs (with torch ops), besides LSTM, GRU and RNN.
GLUE_OPS = frozenset(
    {
        "Add", "And", "Cast", "Concat", "Constant", "ConstantOfShape", "Div", "Equal",
        "Expand", "Flatten", "Gather", "Greater", "Identity", "Less", "Mul", "Neg", "Not",
        "Or", "Range", "Reshape", "ReverseSequence", "Shape", "Slice", "Split", "Squeeze",
        "Sub", "Tile", "Transpose", "Unsqueeze", "Where",
    }
)  # fmt: skip


def onnx_module(model_or_path: Any, *, dtype: Any = None) -> Any:
    """A torch module that runs an ONNX graph of recurrent nodes and glue, exactly.

    ``forward`` takes the graph's inputs (not its initializers) in graph order and returns its
    outputs in graph order and layouts (one tensor when there is one output). LSTM/GRU/RNN
    nodes run on native ``nn.LSTM``/``nn.GRU``/``nn.RNN`` modules where those compute them
    exactly (default activations, no ``clip``, ``input_forget`` or peepholes, GRU
    ``linear_before_reset=1``), else on an exact loop of the ONNX equations.

    Args:
        model_or_path: a ModelProto, its bytes or a path.
        dtype: torch dtype of the computation; default float32.

    Raises:
        UnsupportedFeatureError: an operator outside LSTM/GRU/RNN and :data:`GLUE_OPS`,
            naming the operator and the node.

    Example:
        >>> from xframe_bilstm.adapters.onnx import canonical_to_onnx
        >>> from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer, RecurrentStack
        >>> w = DirectionWeights(np.ones((1, 1)), np.zeros((1, 1)))
        >>> stack = RecurrentStack((RecurrentLayer("simple_rnn", 1, 1, (w,),
        ...                                        recurrent_activation=None),))
        >>> module = onnx_module(canonical_to_onnx(stack, opset=14))
        >>> type(module.recurrent[0].native).__name__
        'RNN'
    """
    torch = require("torch")
    return _interpreter_classes().OnnxGraphModule(
        load_model(model_or_path), torch.float32 if dtype is None else dtype
    )


_CLASSES: list[Any] = []


def _interpreter_classes() -> Any:
    """Define the torch classes on first use, so that importing this module needs no torch."""
    if not _CLASSES:
        _CLASSES.append(_define_interpreter_classes())
    return _CLASSES[0]


def _define_interpreter_classes() -> Any:
    torch = require("torch")
    onnx = require("onnx")
    from types import SimpleNamespace

    from torch import nn

    recurrent = recurrent_classes()
    OnnxRecurrent, reverse_valid = recurrent.OnnxRecurrent, recurrent.reverse_valid

    class OnnxGraphModule(nn.Module):
        """Runs an ONNX graph node by node: glue with torch ops, recurrent nodes as modules."""

        def __init__(self, model: Any, dtype: Any) -> None:
            super().__init__()
            self.dtype = dtype
            graph = model.graph
            self.opset = next(
                (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1
            )
            constants = constant_values(model)
            initializers = {i.name for i in graph.initializer}
            self.input_names = [i.name for i in graph.input if i.name not in initializers]
            self.output_names = [o.name for o in graph.output]
            self.nodes: list[tuple[Any, dict[str, Any], int | None]] = []
            self.recurrent = nn.ModuleList()
            for node in graph.node:
                if node.domain not in ("", "ai.onnx"):
                    raise UnsupportedFeatureError(
                        f"{describe_node(node)}: operator domain {node.domain!r} is not supported"
                    )
                if node.op_type in CELL_BY_OP:
                    spec = read_recurrent_node(node, constants)
                    self.nodes.append((node, node_attributes(node), len(self.recurrent)))
                    self.recurrent.append(OnnxRecurrent(spec, dtype))
                elif node.op_type in GLUE_OPS or node.op_type in STANDARD_OPS:
                    self.nodes.append((node, node_attributes(node), None))
                else:
                    nested = recurrent_in_node(node)
                    if nested is not None:
                        raise UnsupportedFeatureError(
                            f"recurrent nodes inside control flow: {nested}; control flow "
                            "(If, Loop, Scan) is not run here: export the recurrent part "
                            "alone, without the control flow"
                        )
                    raise UnsupportedFeatureError(
                        f"{describe_node(node)}: operator {node.op_type} is not supported (the "
                        f"interpreter runs LSTM, GRU, RNN and "
                        f"{', '.join(sorted(GLUE_OPS | set(STANDARD_OPS)))})"
                    )
            # Constant tensors other than recurrent weights, as buffers (moved by .to()).
            used = {name for node, _, index in self.nodes if index is None for name in node.input}
            self.constant_names = sorted(used & set(constants))
            for k, name in enumerate(self.constant_names):
                self.register_buffer(f"constant{k}", self._tensor(constants[name]))

        def _tensor(self, array: np.ndarray) -> Any:
            tensor = torch.from_numpy(np.array(array))
            return tensor.to(self.dtype) if tensor.is_floating_point() else tensor

        def forward(self, *inputs: Any) -> Any:
            if len(inputs) != len(self.input_names):
                raise WeightShapeError(
                    f"expected {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}"
                )
            values: dict[str, Any] = {"": None}
            for k, name in enumerate(self.constant_names):
                values[name] = getattr(self, f"constant{k}")
            for name, value in zip(self.input_names, inputs):
                tensor = torch.as_tensor(value)
                values[name] = tensor.to(self.dtype) if tensor.is_floating_point() else tensor
            for node, attributes, index in self.nodes:
                args = [values.get(name) if name else None for name in node.input]
                if index is not None:
                    results = self._recurrent(index, args)
                else:
                    results = self._glue(node, attributes, args)
                for name, result in zip(node.output, results):
                    if name:
                        values[name] = result
            outputs = tuple(values[name] for name in self.output_names)
            return outputs[0] if len(outputs) == 1 else outputs

        def _recurrent(self, index: int, args: list[Any]) -> tuple[Any, ...]:
            args = args + [None] * (8 - len(args))
            x, lengths, h0, c0 = args[0], args[4], args[5], args[6]
            return self.recurrent[index](x, lengths, h0, c0)

        def _glue(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> tuple[Any, ...]:
            op = node.op_type
            standard = STANDARD_OPS.get(op)
            if standard is not None:
                return standard(OpCall(torch, node, attributes, args, self.opset, self.dtype))
            handler = getattr(self, f"_op_{op}", None)
            if handler is not None:
                return handler(node, attributes, args)
            binary = {
                "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Less": torch.lt,
                "Greater": torch.gt, "Equal": torch.eq, "And": torch.logical_and,
                "Or": torch.logical_or,
            }  # fmt: skip
            if op in binary:
                return (binary[op](args[0], args[1]),)
            unary = {"Neg": torch.neg, "Not": torch.logical_not, "Identity": lambda v: v}
            return (unary[op](args[0]),)

        # Each _op_* follows the ONNX operator; older opsets keep some inputs as attributes.

        def _ints(self, attributes: dict[str, Any], args: list[Any], name: str, index: int) -> Any:
            if name in attributes:
                return [int(v) for v in attributes[name]]
            if len(args) > index and args[index] is not None:
                return [int(v) for v in args[index].reshape(-1).tolist()]
            return None

        def _op_Constant(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            return (self._tensor(constant_node_value(onnx, node)),)

        def _op_Div(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            a, b = args
            if a.is_floating_point():
                return (a / b,)
            return (torch.div(a, b, rounding_mode="trunc"),)

        def _op_Cast(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            target = onnx.helper.tensor_dtype_to_np_dtype(attributes["to"])
            if np.issubdtype(target, np.floating):
                return (args[0].to(self.dtype),)
            return (args[0].to(torch.from_numpy(np.zeros(0, target)).dtype),)

        def _op_Shape(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            dims = list(args[0].shape)
            start, end = attributes.get("start", 0), attributes.get("end", len(dims))
            return (torch.tensor(dims[slice(start, end)], dtype=torch.int64),)

        def _op_Gather(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            data, indices = args
            axis = attributes.get("axis", 0) % data.dim()
            flat = indices.reshape(-1).long() % data.shape[axis]
            picked = data.index_select(axis, flat)
            shape = (*data.shape[:axis], *indices.shape, *data.shape[axis + 1 :])
            return (picked.reshape(shape),)

        def _op_Unsqueeze(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            axes = self._ints(attributes, args, "axes", 1) or []
            rank = args[0].dim() + len(axes)
            result = args[0]
            for axis in sorted(a % rank for a in axes):
                result = result.unsqueeze(axis)
            return (result,)

        def _op_Squeeze(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            axes = self._ints(attributes, args, "axes", 1)
            if axes is None:
                return (args[0].squeeze(),)
            rank = args[0].dim()
            return (args[0].squeeze(tuple(a % rank for a in axes)),)

        def _op_Concat(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            return (torch.cat([a for a in args if a is not None], dim=attributes["axis"]),)

        def _op_ConstantOfShape(
            self, node: Any, attributes: dict[str, Any], args: list[Any]
        ) -> Any:
            fill = attributes.get("value")
            value = np.zeros(1, np.float32) if fill is None else onnx.numpy_helper.to_array(fill)
            shape = [int(v) for v in args[0].tolist()]
            return (self._tensor(value).reshape(()).expand(shape).clone(),)

        def _op_Transpose(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            perm = attributes.get("perm", list(range(args[0].dim()))[::-1])
            return (args[0].permute(*perm),)

        def _op_Reshape(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            data = args[0]
            shape = self._ints(attributes, args, "shape", 1) or []
            if not attributes.get("allowzero", 0):
                shape = [data.shape[i] if v == 0 else v for i, v in enumerate(shape)]
            return (data.reshape(shape),)

        def _op_Flatten(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            data = args[0]
            axis = attributes.get("axis", 1) % (data.dim() + 1)
            return (data.reshape(int(np.prod(data.shape[:axis])), -1),)

        def _op_Slice(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            data = args[0]
            starts = self._ints(attributes, args, "starts", 1)
            ends = self._ints(attributes, args, "ends", 2)
            axes = self._ints(attributes, args, "axes", 3) or list(range(len(starts)))
            steps = self._ints({}, args, "steps", 4) or [1] * len(starts)
            for start, end, axis, step in zip(starts, ends, axes, steps):
                axis %= data.dim()
                # Python slices clamp out-of-range bounds as ONNX does, for either step sign.
                index = range(*slice(start, end, step).indices(data.shape[axis]))
                data = data.index_select(axis, torch.tensor(list(index), dtype=torch.long))
            return (data,)

        def _op_Split(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            data, axis = args[0], attributes.get("axis", 0)
            sizes = self._ints(attributes, args, "split", 1)
            if sizes is None:
                count = attributes.get("num_outputs", len(node.output))
                size = -(-data.shape[axis] // count)  # the last piece may be smaller
                return tuple(data.split(size, dim=axis))
            return tuple(data.split(sizes, dim=axis))

        def _op_Expand(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            shape = torch.broadcast_shapes(args[0].shape, tuple(int(v) for v in args[1].tolist()))
            return (args[0].expand(shape),)

        def _op_Tile(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            return (args[0].repeat(*[int(v) for v in args[1].tolist()]),)

        def _op_Where(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            return (torch.where(args[0].bool(), args[1], args[2]),)

        def _op_Range(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            start, limit, delta = (a.reshape(()) for a in args)
            return (torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype),)

        def _op_ReverseSequence(
            self, node: Any, attributes: dict[str, Any], args: list[Any]
        ) -> Any:
            data, lengths = args
            batch_axis = attributes.get("batch_axis", 1)
            time_axis = attributes.get("time_axis", 0)
            order = [batch_axis, time_axis] + [
                a for a in range(data.dim()) if a not in (batch_axis, time_axis)
            ]
            moved = data.permute(*order)  # (B, T, ...)
            flat = moved.reshape(moved.shape[0], moved.shape[1], -1)
            flipped = reverse_valid(flat, lengths.long()).reshape(moved.shape)
            return (flipped.permute(*np.argsort(order).tolist()),)

    return SimpleNamespace(OnnxRecurrent=OnnxRecurrent, OnnxGraphModule=OnnxGraphModule)
