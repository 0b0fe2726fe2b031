"""Seeded example inputs for an ONNX graph, built from the types and shapes it declares.

The first float input of rank 3 is the sequence ``x``; the other inputs are initial states
(float, (B, H) in Keras's layout or (dirs, B, H) in ONNX's) and ``sequence_lens``-like
lengths (integer, (B,)). Fixed dimensions keep their sizes; a dynamic one gets the batch or
time size it plays, told by the name it shares with a known batch axis, else by whether
``x`` goes straight into a time-major recurrent node. Lengths are valid (1..T, the first
row full). Inputs that are recurrent weights (W, R, B, P, as in ONNX's own node test cases)
get seeded weights of the shapes the nodes require (:mod:`.weight_inputs`); a boolean input
of one value (an ``If`` condition) is fed true, and :meth:`GraphInputs.flag_variants` gives
every combination. A graph whose inputs play no such roles (a whole model's image or token
ids) gets :func:`~.model_inputs.whole_model_inputs`. onnx is imported inside the functions.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._imports import require
from ...errors import UnsupportedFeatureError
from .model_inputs import declared_tensor_type, whole_model_inputs
from .runtime import load_model
from .vocabulary import CELL_BY_OP
from .weight_inputs import graph_weight_inputs, seeded_weight

# A dimension: its fixed size, or the name it shares with others (dim_param), or, unnamed,
# the place where it stands (input, axis), which no other dimension shares.
_Symbol = int | str | tuple[str, int]


@dataclass(frozen=True)
class GraphInputs:
    """Example inputs in graph order, with the role each plays.

    ``x_name`` names the sequence input; ``time_major``: it is (T, B, D) rather than
    (B, T, D); ``weight_names`` the inputs that are recurrent weights (W, R, B, P);
    ``flag_names`` the boolean inputs of one value (``If`` conditions), fed true.
    """

    names: tuple[str, ...]
    arrays: tuple[np.ndarray, ...]
    x_name: str
    time_major: bool
    state_names: tuple[str, ...]
    lengths_name: str | None

    weight_names: tuple[str, ...] = ()
    flag_names: tuple[str, ...] = ()

    def feeds(self) -> dict[str, np.ndarray]:
        """The inputs by name, as an onnxruntime session takes them."""
        return dict(zip(self.names, self.arrays))

    def flag_variants(self) -> list[GraphInputs]:
        """These inputs with every combination of values of the boolean inputs (``If``
        conditions), so that every branch they choose runs; these inputs alone when there
        are none."""
        variants = []
        for values in itertools.product((True, False), repeat=len(self.flag_names)):
            arrays = list(self.arrays)
            for name, value in zip(self.flag_names, values):
                index = self.names.index(name)
                arrays[index] = np.full_like(arrays[index], value)
            variants.append(dataclasses.replace(self, arrays=tuple(arrays)))
        return variants

    def value(self, name: str) -> np.ndarray:
        return self.arrays[self.names.index(name)]


def seeded_graph_inputs(
    model_or_path: Any, *, seed: int, batch: int, steps: int, zero_states: bool = False
) -> GraphInputs:
    """Seeded inputs for every input of the graph that is not an initializer.

    Inputs that are not a recurrent stack's (sequence, states, lengths) are built by
    :func:`~.model_inputs.whole_model_inputs`; the first float input then stands as ``x``.

    Args:
        model_or_path: a ModelProto, its bytes or a path.
        seed: seed of the random values.
        batch: size of dynamic batch dimensions.
        steps: size of a dynamic time dimension.
        zero_states: feed the initial states zeros rather than random values.

    Raises:
        UnsupportedFeatureError: neither reading fits: no float (B, T, D) input and an
            input without a declared shape or of a type other than float or integer.

    Example:
        >>> from xframe_bilstm.adapters.onnx import canonical_to_onnx
        >>> from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer, RecurrentStack
        >>> w = DirectionWeights(np.zeros((3, 4)), np.zeros((4, 4)))
        >>> stack = RecurrentStack((RecurrentLayer("simple_rnn", 3, 4, (w,),
        ...                                        recurrent_activation=None),))
        >>> model = canonical_to_onnx(stack, opset=14, with_initial_states=True,
        ...                           with_lengths=True)
        >>> inputs = seeded_graph_inputs(model, seed=0, batch=2, steps=7)
        >>> [(name, array.shape, str(array.dtype)) for name, array in inputs.feeds().items()]
        [('x', (2, 7, 3), 'float32'), ('initial_h', (2, 4), 'float32'), ('lengths', (2,), 'int32')]
        >>> int(inputs.value("lengths")[0])
        7
    """
    proto = load_model(model_or_path)
    try:
        return _by_roles(proto, seed=seed, batch=batch, steps=steps, zero_states=zero_states)
    except UnsupportedFeatureError as by_roles:
        try:  # a whole model's inputs: an image, token ids, features with dynamic time
            names, arrays = whole_model_inputs(proto, seed=seed, batch=batch, steps=steps)
        except UnsupportedFeatureError:
            raise by_roles from None
        floats = [name for name, array in zip(names, arrays) if array.dtype.kind == "f"]
        return GraphInputs(names, arrays, (floats or names)[0], False, (), None)


def _by_roles(proto: Any, *, seed: int, batch: int, steps: int, zero_states: bool) -> GraphInputs:
    """The inputs of a recurrent stack's graph, read by the role each plays."""
    onnx = require("onnx")
    initializers = {i.name for i in proto.graph.initializer}
    weights = graph_weight_inputs(proto)
    declared = [
        _Declared.of(onnx, i, i.name in weights)
        for i in proto.graph.input
        if i.name not in initializers
    ]
    x = next((d for d in declared if d.kind == "float" and len(d.dims) == 3), None)
    if x is None:
        found = [f"{d.name} {d.kind} {list(d.dims)}" for d in declared] or "none"
        raise UnsupportedFeatureError(
            f"the graph has no float (batch, time, features) input to feed a sequence to "
            f"(its inputs: {found})"
        )
    others = [d for d in declared if d is not x and d.kind in ("float", "int")]
    batch_symbols = {d.dims[d.batch_axis()] for d in others}
    if x.dims[0] in batch_symbols:
        time_major = False
    elif x.dims[1] in batch_symbols:
        time_major = True
    else:
        time_major = _feeds_time_major_node(proto, x.name)
    batch_axis = 1 if time_major else 0
    sizes: dict[_Symbol, int] = {}
    batch_size = _size(x.dims[batch_axis], batch)
    steps_size = _size(x.dims[1 - batch_axis], steps)
    sizes[x.dims[batch_axis]] = batch_size
    sizes.setdefault(x.dims[1 - batch_axis], steps_size)
    for symbol in batch_symbols:
        sizes.setdefault(symbol, batch_size)
    rng = np.random.default_rng(seed)
    arrays = []
    input_size = x.dims[2] if isinstance(x.dims[2], int) else None
    for declared_input in declared:
        if declared_input.kind == "weight":
            weight = weights[declared_input.name]
            value = seeded_weight(
                rng, weight, declared_input.dims, input_size, declared_input.dtype
            )
            arrays.append(value)
            continue
        if declared_input.kind == "flag":  # an If condition: true; see GraphInputs.flag_variants
            arrays.append(np.ones(declared_input.shape(sizes), declared_input.dtype))
            continue
        shape = declared_input.shape(sizes)
        if declared_input.kind == "int":
            valid = rng.integers(1, steps_size + 1, shape)
            valid.flat[:1] = steps_size  # one full row: every step is used somewhere
            arrays.append(valid.astype(declared_input.dtype))
        elif declared_input is not x and zero_states:
            arrays.append(np.zeros(shape, declared_input.dtype))
        else:
            arrays.append(rng.standard_normal(shape).astype(declared_input.dtype))
    return GraphInputs(
        names=tuple(d.name for d in declared),
        arrays=tuple(arrays),
        x_name=x.name,
        time_major=time_major,
        state_names=tuple(d.name for d in others if d.kind == "float"),
        lengths_name=next((d.name for d in others if d.kind == "int"), None),
        weight_names=tuple(d.name for d in declared if d.kind == "weight"),
        flag_names=tuple(d.name for d in declared if d.kind == "flag"),
    )


@dataclass(frozen=True)
class _Declared:
    """One graph input's name, kind (float or int), numpy dtype and dimensions."""

    name: str
    kind: str
    dtype: np.dtype
    dims: tuple[_Symbol, ...]

    @classmethod
    def of(cls, onnx: Any, value_info: Any, is_weight: bool = False) -> _Declared:
        """One graph input, declared; ``is_weight``: it feeds a recurrent node's W, R, B or P."""
        tensor_type = declared_tensor_type(value_info)
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        dims = tuple(
            dim.dim_value if dim.dim_value > 0 else dim.dim_param or (value_info.name, axis)
            for axis, dim in enumerate(tensor_type.shape.dim)
        )
        if is_weight:
            return cls(value_info.name, "weight", dtype, dims)
        if dtype.kind == "b" and all(d == 1 for d in dims):  # one boolean: an If condition
            return cls(value_info.name, "flag", dtype, dims)
        if dtype.kind not in "fiu":
            raise UnsupportedFeatureError(
                f"graph input {value_info.name!r} is {dtype}; a recurrent graph takes float "
                "sequences and states and integer lengths"
            )
        kind = "float" if dtype.kind == "f" else "int"
        declared = cls(value_info.name, kind, dtype, dims)
        declared.batch_axis()  # refuses shapes with no batch axis
        return declared

    def batch_axis(self) -> int:
        """Lengths (B,), Keras states (B, H), ONNX states (dirs, B, H), sequences (B, T, D)."""
        axes = {("int", 1): 0, ("float", 2): 0, ("float", 3): 1}
        if (self.kind, len(self.dims)) not in axes:
            raise UnsupportedFeatureError(
                f"graph input {self.name!r} is {self.kind} of shape {list(self.dims)}; a "
                "recurrent graph's inputs are a float (batch, time, features) sequence, float "
                "(batch, units) or (directions, batch, units) states and integer (batch,) lengths"
            )
        return axes[(self.kind, len(self.dims))]

    def shape(self, sizes: dict[_Symbol, int]) -> tuple[int, ...]:
        shape = []
        for axis, symbol in enumerate(self.dims):
            if isinstance(symbol, int):
                shape.append(symbol)
            elif symbol in sizes:
                shape.append(sizes[symbol])
            else:
                raise UnsupportedFeatureError(
                    f"graph input {self.name!r}: dimension {axis} ({symbol!r}) is dynamic and "
                    "is neither the batch nor the time of the sequence input; give it a fixed "
                    "size in the graph"
                )
        return tuple(shape)


def _size(symbol: _Symbol, default: int) -> int:
    return symbol if isinstance(symbol, int) else default


def _feeds_time_major_node(proto: Any, name: str) -> bool:
    """Whether input ``name`` is the ``X`` of a recurrent node with ``layout=0`` (T, B, D)."""
    for node in proto.graph.node:
        if node.op_type in CELL_BY_OP and node.input and node.input[0] == name:
            layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
            return layout == 0
    return False
