"""The outputs of a captured ``forward``: one graph output per tensor it returns."""

from __future__ import annotations

from typing import Any

from .._imports import require
from ..graph import LayerRecord
from .capture_tensors import Names, Tensors
from .capture_time_major import time_major_rows


def read_outputs(
    results: Any,
    tensors: Tensors,
    found: list[tuple[str, Any]],
    where: Any,
    records: list[LayerRecord],
    names: Names,
) -> tuple[str, ...]:
    """The graph's outputs: one per tensor ``forward`` returns, nested tuples flattened in
    order (``torch.export`` flattens them: ``(out, (h, c))`` is three results). A
    time-major result (a CTC model's (time, batch, classes)) is returned as torch returns
    it, by a ``time_first`` record added to ``records``, and so is one of its batch and time
    merged (``out.view(-1, C)``, as a loss over every step reads it), by a ``merged_rows``
    record."""
    torch = require("torch")
    outputs: list[str] = []
    for index, result in enumerate(results if isinstance(results, (tuple, list)) else [results]):
        value = getattr(result, "meta", {}).get("val")
        if not isinstance(value, torch.Tensor) or result not in tensors.names:
            shown = (
                "a boolean mask (read only by masked_fill or torch.where with a number)"
                if isinstance(value, torch.Tensor) and value.dtype == torch.bool
                else "a tensor its input does not reach (a parameter or buffer)"
                if isinstance(value, torch.Tensor)
                else f"a {type(value if value is not None else result).__name__}"
            )
            found.append((f"returns {shown} as result {index}; the Keras port cannot", where))
            continue
        output = tensors.names[result]
        if tensors.is_merged(result) or time_major_rows(result, tensors):  # out.view(-1, C)
            options = {"time_first": not tensors.is_merged(result)}
            name = names(f"{output}_rows")
            records.append(LayerRecord(name, "merged_rows", "MergedRows", (output,), options))
            output = name
        elif tensors.is_swapped(result) and result.op != "placeholder":
            records.append(
                LayerRecord(names(f"{output}_time_first"), "time_first", "TimeFirst", (output,))
            )
            output = records[-1].name
        if result.op == "placeholder" or output in outputs:  # ONNX names each output once
            what = "its input" if result.op == "placeholder" else f"{output!r} again"
            found.append(
                (
                    f"returns {what} as result {index}; each output of the Keras port is a "
                    "distinct computed tensor: return it once, or copy it in the caller",
                    where,
                )
            )
            continue
        outputs.append(output)
    return tuple(outputs)


__all__ = ["read_outputs"]
