"""PyTorch's ONNX exporters as frameworks: the converted module, exported, run on onnxruntime.

``torch-onnx`` is ``torch.onnx.export(..., dynamo=False)``, the TorchScript exporter;
``torch-onnx-dynamo`` is ``dynamo=True``, which needs onnxscript. Each exports the torch
port of the run's graph (:func:`export_port`): a graph that is a recurrent stack
(:func:`~xframe_bilstm.stack_graph.stack_of`) as
:func:`~xframe_bilstm.adapters.torch.canonical_to_torch`'s module with the inputs the run
has (``x``, then the initial states, then ``lengths``); any other graph as its whole-model
port (:func:`~xframe_bilstm.models.port.port_graph`) with the model's inputs and outputs, by
name. The TorchScript exporter gets batch and time dynamic. What an exporter raises fails
its own run, with its message.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..canonical import RecurrentStack, output_names
from ..graph import ModelGraph
from ..inputs import as_list
from ..reference import Reading
from ..stack_graph import as_graph, stack_of
from .base import Framework, RunSpec
from .onnx_feeds import graph_lengths, run_inputs
from .onnx_session import (
    export_error,
    installed,
    onnxruntime_devices,
    onnxruntime_versions,
    run_model,
)


class TorchOnnxFramework(Framework):
    """``torch.onnx.export(..., dynamo=False)`` of the converted module or whole-model port,
    on onnxruntime."""

    name = "torch-onnx"
    module = "torch"
    dynamo = False

    @classmethod
    def available(cls) -> bool:
        return installed("torch", "onnx", "onnxruntime")

    def devices(self) -> list[str]:
        return onnxruntime_devices()

    def dtypes(self, device: str) -> list[str]:
        # As for our own export: no float64 recurrent kernels in onnxruntime; a float16
        # module exports float16 nodes, which run.
        return ["float32", "float16"]

    def versions(self) -> dict[str, str]:
        torch = require("torch")
        return {"torch": torch.__version__, **onnxruntime_versions()}

    def supports(self, reading: Reading) -> str | None:
        # A graph exports as its torch port; an export that fails is this column's finding.
        return None

    def run(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
        onnx = require("onnx")
        graph = as_graph(stack)
        lengths = graph_lengths(graph, lengths)  # a whole model's masks come from its inputs
        model, exported = export_port(
            graph, x, initial_states, lengths, dynamo=self.dynamo, dtype=spec.dtype
        )
        onnx.checker.check_model(model)
        feeds = run_inputs(graph, x, initial_states, lengths)
        outputs, settings = run_model(model, feeds, spec, initial_states=None, lengths=None)
        return outputs, {**exported, **settings}


class TorchOnnxDynamoFramework(TorchOnnxFramework):
    """``torch.onnx.export(..., dynamo=True)`` of the converted module, on onnxruntime."""

    name = "torch-onnx-dynamo"
    dynamo = True

    @classmethod
    def available(cls) -> bool:
        # The dynamo exporter writes its graphs with onnxscript, an extra install.
        return installed("torch", "onnx", "onnxruntime", "onnxscript")

    def lengths_refusal(self, reading: Reading) -> str | None:
        if stack_of(as_graph(reading)) is None:  # a whole model's port masks by gathering
            return None
        return (
            "torch.export, which the dynamo exporter runs, cannot capture the packed "
            "sequences a stack's module runs per-row lengths with (their sizes follow the "
            "lengths' values); torch-onnx (the TorchScript exporter) exports them"
        )


def import_exporter_early(frameworks: Sequence[str]) -> bool:
    """Import ``torch.onnx`` now when a ``torch-onnx`` run will need it and TensorFlow is
    not imported yet; whether it did.

    Importing ``torch.onnx`` registers its operators with ``torch.library``, which finds
    each registration's source file with :mod:`inspect`: the first lookup resolves the path
    of every module loaded, some 3,000 more once TensorFlow is in (0.4 s against 0.05 s
    before it). A command that will import TensorFlow imports the exporter first.

    Args:
        frameworks: the names of the frameworks a comparison runs.
    """
    import sys

    if "torch.onnx" in sys.modules or "tensorflow" in sys.modules:
        return False
    exporters = (TorchOnnxFramework.name, TorchOnnxDynamoFramework.name)
    if not any(name in exporters for name in frameworks) or not TorchOnnxFramework.available():
        return False
    require("torch")
    import torch.onnx  # noqa: F401

    return True


def export_port(
    graph: ModelGraph,
    x: Any,
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
    *,
    dynamo: bool,
    dtype: str = "float32",
) -> tuple[Any, dict[str, object]]:
    """Export the torch port of any graph with ``torch.onnx.export``, with the run's inputs:
    a recurrent stack (:func:`~xframe_bilstm.stack_graph.stack_of`) as the module
    :func:`~xframe_bilstm.adapters.torch.canonical_to_torch` builds, with its initial states
    and lengths when the run gives them; any other graph as its whole-model port.

    Returns:
        As :func:`export_torch_module`.
    """
    stack = stack_of(graph)
    if stack is None:
        return export_graph_port(graph, as_list(x), dynamo=dynamo, dtype=dtype)
    return export_torch_module(stack, x, initial_states, lengths, dynamo=dynamo, dtype=dtype)


def export_torch_module(
    stack: RecurrentStack,
    x: np.ndarray,
    initial_states: Sequence[np.ndarray] | None,
    lengths: np.ndarray | None,
    *,
    dynamo: bool,
    dtype: str = "float32",
) -> tuple[Any, dict[str, object]]:
    """Export ``canonical_to_torch(stack)`` in ``dtype`` with ``torch.onnx.export``.

    Returns:
        The loaded ``onnx.ModelProto`` and what the export used: exporter, number of
        Python warnings it gave (tracer warnings mean parts of the graph are fixed to this
        input's shape), input names.
    """
    torch = require("torch")
    from ..adapters.onnx import initial_state_input_names
    from ..adapters.torch import canonical_to_torch

    float_type = getattr(torch, dtype)
    module = canonical_to_torch(stack).to(float_type).eval()
    state_count = 0 if initial_states is None else len(initial_states)
    wrapper = _positional(torch, module, state_count, lengths is not None)
    args = [torch.as_tensor(x, dtype=float_type)]
    names = ["x"]
    if initial_states is not None:
        args += [torch.as_tensor(s, dtype=float_type) for s in initial_states]
        names += list(initial_state_input_names(stack))
    if lengths is not None:
        args.append(torch.as_tensor(lengths, dtype=torch.int64))
        names.append("lengths")
    # TorchScript graphs get dynamic batch and time, as users export them. torch.export
    # (dynamo) would need dynamic_shapes and specializes the per-step loops anyway, so it
    # exports this input's shapes, which are the ones the comparison runs.
    dynamic_axes = {name: {0: "batch"} for name in names}
    dynamic_axes["x"] = {0: "batch", 1: "time"}
    return _export(torch, wrapper, args, names, output_names(stack), dynamic_axes, dynamo)


def export_graph_port(
    graph: ModelGraph, inputs: Sequence[np.ndarray], *, dynamo: bool, dtype: str = "float32"
) -> tuple[Any, dict[str, object]]:
    """Export the torch port of a whole model in ``dtype`` with ``torch.onnx.export``.

    The graph's inputs and outputs are the model's, by name; token ids are int64. Inputs
    whose length Keras leaves open get a dynamic time axis.

    Returns:
        As :func:`export_torch_module`.
    """
    torch = require("torch")
    from ..models.port import port_graph

    float_type = getattr(torch, dtype)
    module = port_graph(graph, verify=False).to(float_type).eval()
    args = [
        torch.as_tensor(a, dtype=torch.int64 if a.dtype.kind in "iu" else float_type)
        for a in inputs
    ]
    names = list(graph.inputs)
    dynamic_axes: dict[str, dict[int, str]] = {}
    for name in names:
        shape = tuple(graph.layer(name).options.get("shape", ()))
        dynamic_axes[name] = {0: "batch", 1: "time"} if shape[:1] == (None,) else {0: "batch"}
    return _export(torch, module, args, names, graph.outputs, dynamic_axes, dynamo)


def _export(
    torch: Any,
    module: Any,
    args: Sequence[Any],
    names: Sequence[str],
    outputs: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
    dynamo: bool,
) -> tuple[Any, dict[str, object]]:
    """``torch.onnx.export`` of ``module`` on ``args``, loaded back; what the export used.

    ``dynamic_axes`` applies to the TorchScript exporter only (see the callers).
    """
    onnx = require("onnx")
    exporter = f"torch.onnx.export(dynamo={dynamo})"
    axes = None if dynamo else dynamic_axes
    with tempfile.TemporaryDirectory() as directory, warnings.catch_warnings(record=True) as caught:
        # The exporter's warnings (tracer, batch_first RNNs) would flood a report; they are
        # counted in the settings instead, and the comparison judges the graph.
        warnings.simplefilter("always")
        path = os.path.join(directory, "model.onnx")
        # The TorchScript trace runs the module once: without autograd, as the other runs do,
        # the recurrence takes the inference kernel the process already made (the graph is
        # the same; with autograd, oneDNN makes a training kernel first, seconds when cold).
        tracing = contextlib.nullcontext() if dynamo else torch.no_grad()
        try:
            with tracing:
                torch.onnx.export(
                    module,
                    tuple(args),
                    path,
                    input_names=list(names),
                    # The dynamo exporter names outputs over values already of that
                    # name ("mul"), an invalid graph (pytorch#158094); outputs are read
                    # in order.
                    output_names=None if dynamo else list(outputs),
                    dynamic_axes=axes,
                    dynamo=dynamo,
                    verbose=False,
                )
        except Exception as error:  # the exporter under test failed: its run fails
            raise export_error(exporter, error) from error
        model = onnx.load(path)  # reads external data, if any, while the folder exists
    dynamic = sorted({axis for by_axis in (axes or {}).values() for axis in by_axis.values()})
    return model, {
        "exporter": exporter,
        "torch": torch.__version__,
        "export_warnings": len(caught),
        "inputs": ", ".join(names),
        "dynamic_axes": ", ".join(dynamic) if dynamic else "none (this input's shapes)",
    }


def _positional(torch: Any, module: Any, state_count: int, has_lengths: bool) -> Any:
    """The module with positional inputs only: exporters take tensors, not lists or None."""

    class Positional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = module

        def forward(self, x: Any, *rest: Any) -> Any:
            states = list(rest[:state_count]) if state_count else None
            lengths = rest[state_count] if has_lengths else None
            return self.module(x, states, lengths)

    return Positional()
