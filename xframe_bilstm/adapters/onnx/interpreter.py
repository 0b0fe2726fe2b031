"""``onnx_module``: a torch module that runs an ONNX graph of recurrent nodes and glue, exactly.

The graph runs node by node: recurrent nodes on :mod:`.recurrent`'s ``OnnxRecurrent`` (with
their weights given at run time where the graph computes them or takes them as inputs), the
glue (:data:`GLUE_OPS`) and the standard operators (:data:`.standard_ops.STANDARD_OPS`)
with torch ops following each ONNX operator, older opsets' attribute forms included, and
``If`` nodes on both their branches, the one run chosen by the condition at run time. A
graph with operators outside those is refused in one error that names every one
(:mod:`.coverage`).

torch and onnx are imported inside the functions, so importing this module imports no
framework.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ..._imports import require
from ...errors import WeightShapeError
from .coverage import refuse_unsupported
from .nodes import (
    WEIGHT_SLOTS,
    constant_node_value,
    default_opset,
    describe_node,
    graph_constant_values,
    layer_name,
    naming_node,
    node_attributes,
)
from .op_call import OpCall
from .quantized_ops import QUANTIZED_OPS, op_key
from .recurrent import layer_key, recurrent_classes, recurrent_module
from .runtime import load_model
from .shortcuts import Shortcuts
from .standard_ops import STANDARD_OPS
from .static_values import (
    StaticValues,
    as_tensors,
    folded_constants,
    is_static,
    static_constants,
)
from .vocabulary import CELL_BY_OP

# Glue operators the interpreter runs (with torch ops), besides LSTM, GRU and RNN.
GLUE_OPS = frozenset(
    {
        "Add", "And", "Cast", "Concat", "Constant", "ConstantOfShape", "Div", "Equal",
        "Expand", "Flatten", "Gather", "Greater", "Identity", "Less", "Mod", "Mul", "Neg", "Not",
        "Or", "Range", "Reshape", "ReverseSequence", "Shape", "Size", "Slice", "Split",
        "Squeeze", "Sub", "Tile", "Transpose", "Unsqueeze", "Where",
    }
)  # fmt: skip
# Every operator the interpreter runs besides LSTM, GRU, RNN and If (``domain.op`` outside
# the default domain: the int8 operators of :mod:`.quantized_ops`).
SUPPORTED_OPS = GLUE_OPS | frozenset(STANDARD_OPS) | frozenset(QUANTIZED_OPS)


def onnx_module(model_or_path: Any, *, dtype: Any = None, capturable: bool = False) -> Any:
    """A torch module that runs an ONNX graph of recurrent nodes and glue, exactly.

    ``forward`` takes the graph's inputs (not its initializers) in graph order and returns its
    outputs in graph order and layouts (one tensor when there is one output); recurrent
    weights, biases and peepholes that are graph inputs are among them. LSTM/GRU/RNN nodes
    run on native ``nn.LSTM``/``nn.GRU``/``nn.RNN`` modules where those compute them exactly
    (constant weights, default activations, no ``clip``, ``input_forget`` or peepholes, GRU
    ``linear_before_reset=1``), else on an exact loop of the ONNX equations. An ``If`` node
    holds both branches as submodules (``module.branches[k]``) and runs the one its condition
    picks.

    Args:
        model_or_path: a ModelProto, its bytes or a path.
        dtype: torch dtype of the computation; default float32.
        capturable: run the graph as the torch code an exporter wrote it from, so that
            ``torch.export`` captures the module as layers (:mod:`.models.from_onnx`): a
            recurrent node's ``Y`` handed over in the layout the graph reads it in,
            activations written out run as one (:mod:`.shortcuts`), token ids gathered from
            a table as ``F.embedding`` (which refuses the negative ids ONNX would count from
            the end). The outputs are the same; ``run_graph``'s values leave out the ones
            inside those shortcuts.

    Sizes computed in the graph are numbers (:mod:`.static_values`): numpy in ``run_graph``.

    Raises:
        UnsupportedFeatureError: operators outside LSTM/GRU/RNN, ``If`` and
            :data:`SUPPORTED_OPS`, all named with their counts and nodes in one message
            (:func:`~.coverage.refuse_unsupported`).

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
        load_model(model_or_path), torch.float32 if dtype is None else dtype, capturable=capturable
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
    reverse_valid = recurrent.reverse_valid

    class OnnxGraphModule(nn.Module):
        """Runs an ONNX graph node by node: glue with torch ops, recurrent nodes as modules,
        ``If`` nodes on their two branches, each an ``OnnxGraphModule`` of its subgraph."""

        def __init__(
            self,
            model: Any,
            dtype: Any,
            *,
            branch: Any = None,
            outer: dict[str, np.ndarray] | None = None,
            opset: int = 1,
            capturable: bool = False,
        ) -> None:
            """The module of ``model``'s graph, or of the subgraph ``branch`` of an ``If``
            node, which sees the constants ``outer`` of the graphs around it."""
            super().__init__()
            self.dtype = dtype
            graph = model.graph if branch is None else branch
            self.opset = opset
            if branch is None:
                refuse_unsupported(graph, SUPPORTED_OPS)  # one error naming everything not run
                self.opset = default_opset(model)
            given = graph_constant_values(graph, outer)
            constants = folded_constants(graph, given, self.opset)
            self.folded = set(constants) - set(given)  # computed once: their nodes run no more
            initializers = {i.name for i in graph.initializer}
            self.input_names = [i.name for i in graph.input if i.name not in initializers]
            self.output_names = [o.name for o in graph.output]
            self.nodes: list[tuple[Any, dict[str, Any], str, int]] = []
            self.recurrent = nn.ModuleList()
            self.branches = nn.ModuleList()
            self.capturable = capturable
            self.shortcuts = Shortcuts(graph, constants, capturable)
            layers: dict[Any, int] = {}  # nodes of one layer run one module (shared)
            for node in graph.node:
                attributes = node_attributes(node)
                if node.op_type in CELL_BY_OP:
                    form = self.shortcuts.forms.get(node.output[0], "")
                    key = layer_key(node, constants)
                    index = None if key is None else layers.get((key, form))
                    if index is None:
                        module = recurrent_module(node, constants, dtype)
                        module.y_form = form
                        if module.native is not None:  # a capture names its record so
                            module.native.record_name = layer_name(node.name or node.output[0])
                        index = len(self.recurrent)
                        self.recurrent.append(module)
                        if key is not None:
                            layers[key, form] = index
                    self.nodes.append((node, attributes, "recurrent", index))
                elif node.op_type == "If":
                    self.nodes.append((node, attributes, "if", len(self.branches)))
                    pair = [
                        OnnxGraphModule(
                            None, dtype, branch=attributes[name], outer=constants, opset=self.opset
                        )
                        for name in ("then_branch", "else_branch")
                    ]
                    self.branches.append(nn.ModuleList(pair))
                else:
                    self.nodes.append((node, attributes, "glue", -1))
            # Constant tensors other than recurrent weights, as buffers (moved by .to()).
            used = {
                name
                for node, _, kind, _ in self.nodes
                if kind != "recurrent"
                for name in node.input
            }
            used |= {
                name
                for node, _, kind, _ in self.nodes
                if kind == "recurrent"
                for slot, name in enumerate(node.input)
                if slot not in WEIGHT_SLOTS  # sequence_lens and initial states
            }
            # Sizes, axes and positions stay numpy (:mod:`.static_values`); other constants
            # are buffers, moved by .to().
            held = static_constants(graph, constants)
            self.static_constants = {name: held[name] for name in used & set(held)}
            self.static = StaticValues(self.opset)
            self.constant_names = sorted(used & set(constants) - set(self.static_constants))
            for k, name in enumerate(self.constant_names):
                self.register_buffer(f"constant{k}", self._tensor(constants[name]))

        def _tensor(self, array: np.ndarray) -> Any:
            tensor = torch.from_numpy(np.array(array))
            return tensor.to(self.dtype) if tensor.is_floating_point() else tensor

        def _placed(self, array: np.ndarray) -> Any:
            """A static value as a tensor on the module's device."""
            held = next(itertools.chain(self.buffers(), self.parameters()), None)
            return self._tensor(array).to("cpu" if held is None else held.device)

        def forward(self, *inputs: Any) -> Any:
            if len(inputs) != len(self.input_names):
                raise WeightShapeError(
                    f"expected {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}"
                )
            values: dict[str, Any] = {}
            for name, value in zip(self.input_names, inputs):
                tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
                floating = tensor.is_floating_point() and tensor.dtype != self.dtype
                values[name] = tensor.to(self.dtype) if floating else tensor
            values = self.run_graph(values)
            outputs = tuple(as_tensors("", [values[n] for n in self.output_names], self._placed))
            return outputs[0] if len(outputs) == 1 else outputs

        def run_graph(self, scope: dict[str, Any]) -> dict[str, Any]:
            """Every value of the graph, run on ``scope`` (its inputs and, for a branch, the
            values of the graphs around it, which ONNX lets a subgraph read)."""
            values = dict(scope)
            values[""] = None
            values.update(self.static_constants)
            for k, name in enumerate(self.constant_names):
                values[name] = getattr(self, f"constant{k}")
            for node, attributes, kind, index in self.nodes:
                args = [values.get(name) if name else None for name in node.input]
                if node.output[0] in self.static_constants or node.output[0] in self.folded:
                    continue  # set above, or read as constants by the nodes after
                if self.shortcuts.run(torch, node, values):
                    continue
                if kind == "glue" and self.static.runs(node, args):
                    results = self.static.run(node, attributes, args)
                    for name, result in zip(node.output, results):
                        values[name] = result
                    continue
                if kind == "recurrent":
                    args = self.shortcuts.recurrent_args(node, args)
                # A capture of this module names the node each operation came from.
                with naming_node(torch, node):
                    args = as_tensors(node.op_type, args, self._placed)
                    if kind == "recurrent":
                        results = self._recurrent(index, args)
                    elif kind == "if":
                        results = self._if(node, index, args[0], values)
                    else:
                        results = self._glue(node, attributes, args)
                for name, result in zip(node.output, results):
                    if name:
                        values[name] = result
            return values

        def _recurrent(self, index: int, args: list[Any]) -> tuple[Any, ...]:
            args = args + [None] * (8 - len(args))
            x, lengths, h0, c0 = args[0], args[4], args[5], args[6]
            weights = tuple(args[slot] for slot in WEIGHT_SLOTS)
            return self.recurrent[index](x, lengths, h0, c0, weights)

        def _if(self, node: Any, index: int, condition: Any, values: dict[str, Any]) -> Any:
            if condition is None or condition.numel() != 1:
                raise WeightShapeError(
                    f"{describe_node(node)}: the condition must be one boolean value, got "
                    f"{None if condition is None else tuple(condition.shape)}"
                )
            pair: Any = self.branches[index]
            branch = pair[0] if bool(condition.reshape(())) else pair[1]
            inner = branch.run_graph(values)
            return tuple(inner[name] for name in branch.output_names)

        def _glue(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> tuple[Any, ...]:
            op = node.op_type
            standard = STANDARD_OPS.get(op) or QUANTIZED_OPS.get(op_key(node))
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

        def _op_Mod(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            # fmod=1: C's fmod (the dividend's sign); 0: the divisor's sign, as Python's %
            function = torch.fmod if attributes.get("fmod", 0) else torch.remainder
            return (function(args[0], args[1]),)

        def _op_Cast(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            target = onnx.helper.tensor_dtype_to_np_dtype(attributes["to"])
            if np.issubdtype(target, np.floating):  # a float Cast to its own dtype: nothing
                return (args[0] if args[0].dtype == self.dtype else args[0].to(self.dtype),)
            return (args[0].to(torch.from_numpy(np.zeros(0, target)).dtype),)

        def _op_Gather(self, node: Any, attributes: dict[str, Any], args: list[Any]) -> Any:
            data, indices = args
            axis = attributes.get("axis", 0) % data.dim()
            if is_static(indices) and indices.ndim == 0:  # x[:, -1]: a select, as torch's
                return (data.select(axis, int(indices)),)
            if is_static(indices):
                indices = self._placed(indices)
            elif self.capturable and axis == 0 and data.dim() == 2:  # token ids into a table
                return (torch.nn.functional.embedding(indices, data),)  # ids from 0, as torch's
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
                first, stop, step = slice(start, end, step).indices(data.shape[axis])
                backwards = step < 0  # torch slices step forwards: ascending, then flipped
                if backwards:
                    count = len(range(first, stop, step))
                    first, stop, step = first + step * (count - 1), first + 1, -step
                data = data[(slice(None),) * axis + (slice(first, stop, step),)]
                data = data.flip(axis) if backwards else data
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

    return SimpleNamespace(OnnxRecurrent=recurrent.OnnxRecurrent, OnnxGraphModule=OnnxGraphModule)
