"""Keras's attention layers as PyTorch modules of plain tensor operations.

``Attention``/``AdditiveAttention`` keep their Keras scalars (``scale``,
``concat_score_weight``) as parameters. ``MultiHeadAttention`` keeps its four projections
as :class:`Projection` modules (``query``, ``key``, ``value``, ``output``) whose weights are the
Keras kernels flattened over the heads and transposed, the layout of
``nn.MultiheadAttention``'s ``in_proj_weight`` rows and ``out_proj``. Each module takes
``(query, value[, key])`` and the masks of those tensors, and returns one tensor, whose
mask is the query's (:meth:`combine_masks`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..adapters.torch.tensors import owned_tensor
from ..graph import LayerRecord

MASKED_SCORE = -1e9


def _parameter(array: np.ndarray) -> nn.Parameter:
    return nn.Parameter(owned_tensor(array))  # a copy the parameter owns, bfloat16 included


def _causal(query: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(query.shape[1], device=query.device)
    columns = torch.arange(value.shape[1], device=query.device)
    return (rows[:, None] >= columns[None, :])[None]  # (1, Tq, Tv)


class _AttentionBase(nn.Module):
    """The masking both kinds share: a bool (B or 1, Tq, Tv) of the scores that count."""

    use_causal_mask: bool
    masks_rows: bool  # whether the query's mask masks scores (MultiHeadAttention)

    def score_mask(
        self, query: torch.Tensor, value: torch.Tensor, masks: Sequence[torch.Tensor | None]
    ) -> torch.Tensor | None:
        mask = None
        keys = masks[1:] if self.masks_rows else masks[1:2]
        for key_mask in keys:
            if key_mask is not None:
                step = key_mask.bool()[:, None, :]
                mask = step if mask is None else mask & step
        if self.masks_rows and masks[0] is not None:
            rows = masks[0].bool()[:, :, None]
            mask = rows if mask is None else mask & rows
        if self.use_causal_mask:
            lower = _causal(query, value)
            mask = lower if mask is None else mask & lower
        return mask

    def combine_masks(
        self, tensors: list[torch.Tensor], masks: list[torch.Tensor | None]
    ) -> torch.Tensor | None:
        """The output's mask: the query's, as Keras returns it."""
        return masks[0]


class Attention(_AttentionBase):
    """Keras ``Attention`` (``score="dot"`` or ``"concat"``) or ``AdditiveAttention``."""

    masks_rows = False

    def __init__(self, score: str, weights: dict[str, np.ndarray], use_causal_mask: bool) -> None:
        super().__init__()
        self.score, self.use_causal_mask = score, use_causal_mask
        self.scale = _parameter(weights["scale"]) if "scale" in weights else None
        weight = weights.get("concat_score_weight")
        self.concat_score_weight = None if weight is None else _parameter(weight)

    def _scores(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        if self.score == "dot":
            scores = query @ key.transpose(-1, -2)
            return scores if self.scale is None else scores * self.scale
        summed = query[:, :, None, :] + key[:, None, :, :]
        if self.score == "additive":
            tanh = torch.tanh(summed)
            return (tanh if self.scale is None else self.scale * tanh).sum(dim=-1)
        assert self.concat_score_weight is not None
        scaled = summed if self.scale is None else self.scale * summed
        return self.concat_score_weight * torch.tanh(scaled).sum(dim=-1)

    def forward(
        self, *tensors: torch.Tensor, masks: Sequence[torch.Tensor | None] | None = None
    ) -> torch.Tensor:
        query, value = tensors[0], tensors[1]
        key = tensors[2] if len(tensors) > 2 else value
        masks = list(masks) if masks is not None else [None] * len(tensors)
        scores = self._scores(query, key)
        mask = self.score_mask(query, value, masks)
        if mask is not None:
            scores = torch.where(mask, scores, torch.full_like(scores, MASKED_SCORE))
        y = torch.softmax(scores, dim=-1) @ value
        if masks[0] is not None:
            y = torch.where(masks[0].bool()[..., None], y, torch.zeros_like(y))
        return y

    def extra_repr(self) -> str:
        return f"score={self.score!r}, use_causal_mask={self.use_causal_mask}"


class Projection(nn.Module):
    """``x @ kernel + bias`` with the Keras kernel's head axes flattened, kept as
    ``weight`` (out, in) and ``bias`` as ``nn.Linear`` keeps them; not an ``nn.Linear``, so
    that a diagnosis pairs the model's ``Dense`` layers with the port's ``nn.Linear``s."""

    def __init__(self, kernel: np.ndarray, bias: np.ndarray | None, flatten_from: int) -> None:
        super().__init__()
        matrix = np.asarray(kernel).reshape(int(np.prod(kernel.shape[:flatten_from])), -1)
        self.weight = _parameter(np.ascontiguousarray(matrix.T))
        self.bias = None if bias is None else _parameter(np.asarray(bias).reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape
        return f"in_features={in_features}, out_features={out_features}"


class MultiHeadAttention(_AttentionBase):
    """Keras ``MultiHeadAttention`` over the time axis of (batch, time, features) inputs."""

    masks_rows = True

    def __init__(self, record: LayerRecord) -> None:
        super().__init__()
        options, weights = record.options, record.weights
        self.num_heads, self.key_dim = int(options["num_heads"]), int(options["key_dim"])
        self.value_dim = int(options["value_dim"])
        self.use_causal_mask = bool(options["use_causal_mask"])
        self.zero_masked = options["masked_rows"] == "zero"
        for name in ("query", "key", "value"):
            kernel, bias = weights[f"{name}_kernel"], weights.get(f"{name}_bias")
            self.add_module(name, Projection(kernel, bias, 1))
        self.output = Projection(weights["output_kernel"], weights.get("output_bias"), 2)

    def _heads(self, x: torch.Tensor, name: str, dim: int) -> torch.Tensor:
        """(B, T, D) projected and split: (B, heads, T, dim)."""
        y = getattr(self, name)(x)
        return y.reshape(y.shape[0], y.shape[1], self.num_heads, dim).transpose(1, 2)

    def forward(
        self, *tensors: torch.Tensor, masks: Sequence[torch.Tensor | None] | None = None
    ) -> torch.Tensor:
        query, value = tensors[0], tensors[1]
        key = tensors[2] if len(tensors) > 2 else value
        masks = list(masks) if masks is not None else [None] * len(tensors)
        q = self._heads(query, "query", self.key_dim) * (1.0 / float(np.sqrt(self.key_dim)))
        k = self._heads(key, "key", self.key_dim)
        v = self._heads(value, "value", self.value_dim)
        scores = q @ k.transpose(-1, -2)  # (B, heads, Tq, Tv)
        mask = self.score_mask(query, value, masks)
        if mask is not None:
            scores = torch.where(mask[:, None], scores, torch.full_like(scores, MASKED_SCORE))
        weights = torch.softmax(scores, dim=-1)
        if mask is not None and self.zero_masked:
            weights = torch.where(mask[:, None], weights, torch.zeros_like(weights))
        context = (weights @ v).transpose(1, 2)  # (B, Tq, heads, value_dim)
        return self.output(context.reshape(context.shape[0], context.shape[1], -1))

    def extra_repr(self) -> str:
        return (
            f"num_heads={self.num_heads}, key_dim={self.key_dim}, value_dim={self.value_dim}, "
            f"use_causal_mask={self.use_causal_mask}"
        )


def attention_module(record: LayerRecord) -> nn.Module:
    """The module of an ``attention`` or ``multi_head_attention`` record."""
    if record.kind == "multi_head_attention":
        return MultiHeadAttention(record)
    return Attention(
        str(record.options["score"]), dict(record.weights), bool(record.options["use_causal_mask"])
    )


__all__ = ["Attention", "MultiHeadAttention", "Projection", "attention_module"]
