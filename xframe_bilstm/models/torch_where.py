"""The ``where`` record (a captured ``masked_fill``/``where`` with a number) as a torch
module, computing what :mod:`xframe_bilstm.reference.where` computes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..graph import LayerRecord
from ..reference.where import COMPARISONS, evaluate, expression


class Where(nn.Module):
    """``fill`` where ``source`` (axes of size 1 inserted at ``axes``) compares to ``value``
    as said, ``x`` elsewhere (``otherwise`` where given: a mask as numbers, in the default
    float dtype, which any other float promotes exactly); no mask after.

    Example:
        >>> where = Where("eq", 0.0, float("-inf"), (1,))
        >>> where(torch.ones(1, 2, 2), torch.tensor([[5, 0]])).tolist()
        [[[1.0, -inf], [1.0, -inf]]]
    """

    def __init__(
        self,
        compare: str,
        value: float,
        fill: float,
        axes: Sequence[int],
        condition: Mapping[str, Any] | None = None,
        otherwise: float | None = None,
    ) -> None:
        super().__init__()
        self.compare, self.value, self.fill = compare, float(value), float(fill)
        self.otherwise = otherwise
        self.axes = tuple(int(axis) for axis in axes)
        options = {"compare": compare, "value": value, "axes": self.axes}
        # Several comparisons combined with and/or (reference.where's terms), or one.
        self.condition = expression({**options, "condition": condition} if condition else options)

    def forward(self, x: torch.Tensor, *sources: torch.Tensor, masks: Any = ()) -> torch.Tensor:
        tensors = (x, *sources)
        holds = evaluate(
            self.condition,
            lambda term, index: _compared(term, tensors[index]),
            lambda op, a, b: torch.logical_and(a, b) if op == "and" else torch.logical_or(a, b),
        )
        if self.otherwise is not None:  # a mask as numbers: 0 and 1 are exact in any float
            fill, otherwise = (
                torch.tensor(v, device=x.device) for v in (self.fill, self.otherwise)
            )
            return torch.where(holds, fill, otherwise)
        return torch.where(holds, torch.full((), self.fill, dtype=x.dtype, device=x.device), x)

    def combine_masks(
        self, tensors: list[torch.Tensor], masks: list[torch.Tensor | None]
    ) -> torch.Tensor | None:
        return None

    def extra_repr(self) -> str:
        return f"compare={self.compare!r}, value={self.value}, fill={self.fill}, axes={self.axes}"


def _compared(term: Mapping[str, Any], source: torch.Tensor) -> torch.Tensor:
    compared = source.to(torch.float64)  # ids and floats compare alike
    for axis in sorted(int(axis) for axis in term["axes"]):  # as expand_dims counts them
        compared = compared.unsqueeze(axis)
    return COMPARISONS[str(term["compare"])](compared, float(term["value"]))


def where_module(record: LayerRecord) -> Where:
    """The module of a ``where`` record."""
    options = record.options
    otherwise = options.get("otherwise")
    otherwise = None if otherwise is None else float(otherwise)
    if "condition" in options:
        return Where("eq", 0.0, float(options["fill"]), (), options["condition"], otherwise)
    return Where(
        str(options["compare"]),
        float(options["value"]),
        float(options["fill"]),
        options["axes"],
        otherwise=otherwise,
    )


__all__ = ["Where", "where_module"]
