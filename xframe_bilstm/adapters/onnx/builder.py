"""``GraphBuilder``: the nodes, initializers and unique names of an ONNX graph being built."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class GraphBuilder:
    """Nodes, initializers and unique names of a graph under construction.

    ``float_dtype`` is the dtype of the graph's floating-point tensors (weights, inputs,
    outputs and float constants). ``shared`` maps a layer's name to that of the layer whose
    weights it holds (a shared layer): a constant named ``"<layer>/..."`` is the other
    layer's, one initializer for both.
    """

    def __init__(self, onnx: Any, opset: int, float_dtype: Any = np.float32) -> None:
        self.onnx, self.opset = onnx, opset
        self.float_dtype = np.dtype(float_dtype)
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._used: set[str] = set()
        self._constants: dict[tuple[str, str, tuple[int, ...], bytes], str] = {}
        self.shared: dict[str, str] = {}

    def name(self, hint: str) -> str:
        """A name not used yet in this graph: ``hint``, else ``hint_1``, ``hint_2``, ..."""
        name, count = hint, 1
        while name in self._used:
            name, count = f"{hint}_{count}", count + 1
        self._used.add(name)
        return name

    def constant(self, hint: str, array: np.ndarray) -> str:
        """The name of an initializer holding ``array``, shared by equal constants."""
        array = np.asarray(array)
        layer, slash, rest = hint.partition("/")
        hint = self.shared.get(layer, layer) + slash + rest
        key = (hint, array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:  # one initializer per distinct small constant
            name = self.name(hint)
            self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
            self._constants[key] = name
        return self._constants[key]

    def ints(self, hint: str, values: Sequence[int]) -> str:
        """An int64 constant vector (shapes, axes, slice bounds)."""
        return self.constant(hint, np.asarray(values, dtype=np.int64))

    def scalar_index(self, value: int) -> str:
        """An int64 scalar, for ``Gather`` that drops the indexed axis."""
        return self.constant(f"index{value}", np.asarray(value, dtype=np.int64))

    def op(
        self,
        op_type: str,
        inputs: Sequence[str],
        hint: str,
        *,
        outputs: int = 1,
        output_names: Sequence[str] | None = None,
        **attributes: Any,
    ) -> list[str]:
        """Add an ``op_type`` node; return its output names (fresh ones from ``hint``)."""
        names = list(
            output_names
            or [self.name(f"{hint}_{i}" if outputs > 1 else hint) for i in range(outputs)]
        )
        self.nodes.append(
            self.onnx.helper.make_node(
                op_type, list(inputs), names, name=self.name(f"{hint}/{op_type}"), **attributes
            )
        )
        return names

    def one(self, op_type: str, inputs: Sequence[str], hint: str, **attributes: Any) -> str:
        """Add a node with one output and return that output's name."""
        return self.op(op_type, inputs, hint, **attributes)[0]
