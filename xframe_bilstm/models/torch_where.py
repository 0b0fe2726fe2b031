"""The ``where`` record (a captured ``masked_fill``/``where`` with a number) as a torch
module, computing what :mod:`xframe_bilstm.reference.where` computes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..graph import LayerRecord
from ..reference.where import COMPARISONS


class Where(nn.Module):
    """``fill`` where ``source`` (axes of size 1 inserted at ``axes``) compares to ``value``
    as said, ``x`` elsewhere; no mask after.

    Example:
        >>> where = Where("eq", 0.0, float("-inf"), (1,))
        >>> where(torch.ones(1, 2, 2), torch.tensor([[5, 0]])).tolist()
        [[[1.0, -inf], [1.0, -inf]]]
    """

    def __init__(self, compare: str, value: float, fill: float, axes: Sequence[int]) -> None:
        super().__init__()
        self.compare, self.value, self.fill = compare, float(value), float(fill)
        self.axes = tuple(int(axis) for axis in axes)

    def forward(
        self, x: torch.Tensor, source: torch.Tensor, masks: Sequence[Any] = ()
    ) -> torch.Tensor:
        compared = source.to(torch.float64)
        for axis in sorted(self.axes):  # each axis counts in the result, as expand_dims
            compared = compared.unsqueeze(axis)
        holds = COMPARISONS[self.compare](compared, self.value)
        return torch.where(holds, torch.full((), self.fill, dtype=x.dtype, device=x.device), x)

    def combine_masks(
        self, tensors: list[torch.Tensor], masks: list[torch.Tensor | None]
    ) -> torch.Tensor | None:
        return None

    def extra_repr(self) -> str:
        return f"compare={self.compare!r}, value={self.value}, fill={self.fill}, axes={self.axes}"


def where_module(record: LayerRecord) -> Where:
    """The module of a ``where`` record."""
    options = record.options
    return Where(
        str(options["compare"]), float(options["value"]), float(options["fill"]), options["axes"]
    )


__all__ = ["Where", "where_module"]
