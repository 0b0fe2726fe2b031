"""torch.onnx's TorchScript exporter as the tests call it: one input named ``x``, the axes
given dynamic, the exporter's notes on batch_first and dynamic axes silenced."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any


def torch_export(
    module: Any,
    x: Any,
    axes: dict[int, str] | None,
    *,
    outputs: list[str] | None = None,
    path: Path | None = None,
    opset: int | None = None,
) -> Any:
    """``torch.onnx.export(module, (x,), dynamo=False)`` as an ``onnx.ModelProto``, also
    written to ``path`` when given; ``axes`` the dynamic axes of ``x`` (None: all fixed)."""
    import onnx
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (x,), buffer, dynamo=False, input_names=["x"], output_names=outputs,
            dynamic_axes=None if axes is None else {"x": axes},
            **({} if opset is None else {"opset_version": opset}),
        )  # fmt: skip
    if path is not None:
        path.write_bytes(buffer.getvalue())
    return onnx.load_from_string(buffer.getvalue())
