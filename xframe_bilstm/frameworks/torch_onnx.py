"""PyTorch's ONNX exporters as frameworks: the converted module, exported, run on onnxruntime.

``torch-onnx`` is ``torch.onnx.export(..., dynamo=False)``, the TorchScript exporter;
``torch-onnx-dynamo`` is ``dynamo=True``, which needs onnxscript. Each exports
:func:`~xframe_bilstm.adapters.torch.canonical_to_torch`'s module with the inputs the run
has (``x``, then the initial states, then ``lengths``), batch and time dynamic. What an
exporter raises fails its own run, with its message.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..canonical import RecurrentStack, output_names
from ..reference import Reading
from .base import Framework, RunSpec
from .onnx_session import (
    export_error,
    installed,
    onnxruntime_devices,
    onnxruntime_versions,
    run_model,
    stateless,
)


class TorchOnnxFramework(Framework):
    """``torch.onnx.export(..., dynamo=False)`` of the converted module, on onnxruntime."""

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

    def run(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
        assert isinstance(stack, RecurrentStack)  # supports() refuses graphs
        onnx = require("onnx")
        model, exported = export_torch_module(
            stateless(stack), x, initial_states, lengths, dynamo=self.dynamo, dtype=spec.dtype
        )
        onnx.checker.check_model(model)
        outputs, settings = run_model(
            model, x, spec, initial_states=initial_states, lengths=lengths
        )
        return outputs, {**exported, **settings}


class TorchOnnxDynamoFramework(TorchOnnxFramework):
    """``torch.onnx.export(..., dynamo=True)`` of the converted module, on onnxruntime."""

    name = "torch-onnx-dynamo"
    dynamo = True

    @classmethod
    def available(cls) -> bool:
        # The dynamo exporter writes its graphs with onnxscript, an extra install.
        return installed("torch", "onnx", "onnxruntime", "onnxscript")


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
    onnx = require("onnx")
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
    exporter = f"torch.onnx.export(dynamo={dynamo})"
    # TorchScript graphs get dynamic batch and time, as users export them. torch.export
    # (dynamo) would need dynamic_shapes and specializes the per-step loops anyway, so it
    # exports this input's shapes, which are the ones the comparison runs.
    dynamic_axes = None if dynamo else {name: {0: "batch"} for name in names}
    if dynamic_axes is not None:
        dynamic_axes["x"] = {0: "batch", 1: "time"}
    with tempfile.TemporaryDirectory() as directory, warnings.catch_warnings(record=True) as caught:
        # The exporter's warnings (tracer, batch_first RNNs) would flood a report; they are
        # counted in the settings instead, and the comparison judges the graph.
        warnings.simplefilter("always")
        path = os.path.join(directory, "model.onnx")
        try:
            torch.onnx.export(
                wrapper,
                tuple(args),
                path,
                input_names=names,
                output_names=list(output_names(stack)),
                dynamic_axes=dynamic_axes,
                dynamo=dynamo,
                verbose=False,
            )
        except Exception as error:  # the exporter under test failed: its run fails
            raise export_error(exporter, error) from error
        model = onnx.load(path)  # reads external data, if any, while the folder exists
    return model, {
        "exporter": exporter,
        "torch": torch.__version__,
        "export_warnings": len(caught),
        "inputs": ", ".join(names),
        "dynamic_axes": "batch, time" if dynamic_axes else "none (this input's shapes)",
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
