"""torch.onnx's TorchScript exporter as the tests call it: one input named ``x`` (or several,
named), the axes given dynamic, the exporter's notes on batch_first and dynamic axes
silenced."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def torch_export(
    module: Any,
    x: Any,
    axes: dict[int, str] | Sequence[dict[int, str] | None] | None,
    *,
    outputs: list[str] | None = None,
    path: Path | None = None,
    opset: int | None = None,
    names: Sequence[str] = ("x",),
) -> Any:
    """``torch.onnx.export(module, (x,), dynamo=False)`` as an ``onnx.ModelProto``, also
    written to ``path`` when given; ``axes`` the dynamic axes of ``x`` (None: all fixed).
    A tuple ``x`` is several inputs, named ``names``, with one entry of ``axes`` each."""
    import onnx
    import torch

    inputs = x if isinstance(x, tuple) else (x,)
    per_input = axes if isinstance(x, tuple) else (axes,)
    dynamic = {name: a for name, a in zip(names, per_input) if a is not None}  # type: ignore[arg-type]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, inputs, buffer, dynamo=False, input_names=list(names),
            output_names=outputs, dynamic_axes=dynamic or None,
            **({} if opset is None else {"opset_version": opset}),
        )  # fmt: skip
    if path is not None:
        path.write_bytes(buffer.getvalue())
    return onnx.load_from_string(buffer.getvalue())
